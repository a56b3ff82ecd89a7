"""Flatten (N, C, H, W) to (N, C*H*W)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import Unit, register_unit


@register_unit
@dataclass(frozen=True)
class Flatten(Unit):
    """Flatten (N, C, H, W) to (N, C*H*W): each input channel becomes H*W features."""

    type = "flatten"

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        c, h, w = self.maps_input(inp)
        return (c * h * w,), 0, 0

    def module(self, c_in: int) -> nn.Module:
        return nn.Flatten()
