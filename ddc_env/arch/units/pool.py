"""Max or average pooling."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import SpecError, Unit, conv_out, register_unit


@register_unit
@dataclass(frozen=True)
class Pool(Unit):
    """Max or average pooling."""

    mode: str = "max"
    kernel: int = 2
    stride: int = 2
    padding: int = 0
    type = "pool"

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        c, h, w = self.maps_input(inp)
        oh, ow = (conv_out(s, self.kernel, self.stride, self.padding) for s in (h, w))
        if self.mode not in ("max", "avg"):
            raise SpecError(f"{self.name}: pool mode must be 'max' or 'avg', got {self.mode!r}")
        if min(oh, ow) < 1:
            raise SpecError(f"{self.name}: pooling {h}x{w} maps leaves nothing")
        return (c, oh, ow), 0, 0

    def module(self, c_in: int) -> nn.Module:
        return (nn.MaxPool2d if self.mode == "max" else nn.AvgPool2d)(self.kernel, self.stride, self.padding)
