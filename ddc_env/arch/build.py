"""``build(spec) -> nn.Module``: real torch modules from the IR, in torchvision's parameter layout."""
from __future__ import annotations

import torch
from torch import nn

from .spec import Block, Conv, Flatten, GlobalPool, Linear, NetSpec, Pool, Unit


class ConvUnit(nn.Module):
    """Conv2d (+ BatchNorm2d) (+ ReLU)."""

    def __init__(self, c_in: int, u: Conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, u.out_channels, u.kernel, u.stride, u.padding, bias=not u.bn)
        self.bn = nn.BatchNorm2d(u.out_channels) if u.bn else None
        self.relu = u.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return torch.relu(x) if self.relu else x


class BlockUnit(nn.Module):
    """Residual block with torchvision's attribute names (conv1, bn1, ..., downsample.0/1)."""

    def __init__(self, c_in: int, u: Block) -> None:
        super().__init__()
        m, o, k, pad = u.mid_channels, u.out_channels, u.kernel, u.kernel // 2
        if u.bottleneck:
            self.conv1 = nn.Conv2d(c_in, m, 1, bias=False)
            self.conv2 = nn.Conv2d(m, m, k, u.stride, pad, bias=False)
            self.conv3 = nn.Conv2d(m, o, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(o)
        else:
            self.conv1 = nn.Conv2d(c_in, m, k, u.stride, pad, bias=False)
            self.conv2 = nn.Conv2d(m, o, k, 1, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        self.bn2 = nn.BatchNorm2d(m if u.bottleneck else o)
        self.bottleneck = u.bottleneck
        self.downsample = None
        if u.shortcut == "projection":
            self.downsample = nn.Sequential(nn.Conv2d(c_in, o, 1, u.stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.bottleneck:
            out = self.bn3(self.conv3(torch.relu(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class LinearUnit(nn.Module):
    """Linear (+ ReLU)."""

    def __init__(self, f_in: int, u: Linear) -> None:
        super().__init__()
        self.fc = nn.Linear(f_in, u.out_features)
        self.relu = u.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return torch.relu(x) if self.relu else x


class GlobalAvgPool(nn.Module):
    """Average over H and W: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def module_key(name: str) -> str:
    """The ModuleDict key of a unit name ('layer1.0' -> 'layer1_0')."""
    return name.replace(".", "_")


def unit_module(u: Unit, c_in: int) -> nn.Module:
    """The (randomly initialised) torch module of one unit taking ``c_in`` input channels or features."""
    if isinstance(u, Conv):
        return ConvUnit(c_in, u)
    if isinstance(u, Block):
        return BlockUnit(c_in, u)
    if isinstance(u, Linear):
        return LinearUnit(c_in, u)
    if isinstance(u, Pool):
        cls = nn.MaxPool2d if u.mode == "max" else nn.AvgPool2d
        return cls(u.kernel, u.stride, u.padding)
    if isinstance(u, GlobalPool):
        return GlobalAvgPool()
    if isinstance(u, Flatten):
        return nn.Flatten()
    raise TypeError(f"cannot build unit {u!r}")


class Net(nn.Module):
    """A network built from a NetSpec: its units applied in order."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.units = nn.ModuleDict()
        for row in spec.shapes():
            self.units[module_key(row.unit.name)] = unit_module(row.unit, row.inp[0])

    def unit(self, name: str) -> nn.Module:
        return self.units[module_key(name)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.units.values():
            x = m(x)
        return x


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
