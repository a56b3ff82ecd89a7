"""Fully connected layer (+ ReLU)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .base import NEW, DecisionContext, Ports, SpecError, Unit, UnitDecision, l1_out, register_unit


class LinearUnit(nn.Module):
    """Linear (+ ReLU)."""

    def __init__(self, f_in: int, u: Linear) -> None:
        super().__init__()
        self.fc = nn.Linear(f_in, u.out_features)
        self.relu = u.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return torch.relu(x) if self.relu else x


@register_unit
@dataclass(frozen=True)
class Linear(Unit):
    """Fully connected layer (+ ReLU). The last unit of every network is a Linear classifier."""

    out_features: int
    relu: bool = False
    type = "linear"
    obs_kind = "linear"

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        if len(inp) != 1:
            raise SpecError(f"{self.name}: Linear needs a vector input (add Flatten/GlobalPool), got {inp}")
        return (self.out_features,), inp[0] * self.out_features + self.out_features, 2 * inp[0] * self.out_features

    def module(self, c_in: int) -> nn.Module:
        return LinearUnit(c_in, self)

    def output_tie(self, inp: tuple[int, ...]) -> str:
        return NEW

    @property
    def width(self) -> int:
        return self.out_features

    def resized(self, out: int | None = None, inner: Mapping[str, int] | None = None) -> Linear:
        return self if out is None else dataclasses.replace(self, out_features=out)

    def decision(self, ctx: DecisionContext) -> UnitDecision | None:
        return None if ctx.classifier else UnitDecision(True, "", self.out_features)

    def inherit(self, dst: nn.Module, src: nn.Module, ports: Ports) -> None:
        dst.fc.weight.copy_(ports.inputs(src.fc.weight)[ports.out])
        dst.fc.bias.copy_(src.fc.bias[ports.out])

    def importance(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {"": l1_out(module.fc.weight)}

    def activation_points(self, module: nn.Module) -> dict[str, list[nn.Module]]:
        return {"": [module]}
