"""``build(spec) -> nn.Module``: real torch modules from the IR, in torchvision's parameter layout."""
from __future__ import annotations

import torch
from torch import nn

from .spec import NetSpec, Unit


def module_key(name: str) -> str:
    """The ModuleDict key of a unit name ('layer1.0' -> 'layer1_0')."""
    return name.replace(".", "_")


def unit_module(u: Unit, c_in: int) -> nn.Module:
    """The (randomly initialised) torch module of one unit taking ``c_in`` input channels or features."""
    return u.module(c_in)


class Net(nn.Module):
    """A network built from a NetSpec: its units applied in order."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.units = nn.ModuleDict()
        for row in spec.shapes():
            self.units[module_key(row.unit.name)] = row.unit.module(row.inp[0])

    def unit(self, name: str) -> nn.Module:
        return self.units[module_key(name)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.units.values():
            x = m(x)
        return x


def state_dict_shapes(spec: NetSpec) -> dict[str, torch.Size]:
    """Key -> shape of every entry of ``build(spec).state_dict()``, from a module built on the meta device (no memory,
    no initialisation)."""
    with torch.device("meta"):
        net = Net(spec)
    return {key: value.shape for key, value in net.state_dict().items()}


def build(spec: NetSpec) -> Net:
    """Build a randomly initialised torch module (torchvision's init for ResNets) for ``spec``."""
    net = Net(spec)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net
