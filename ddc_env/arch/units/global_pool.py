"""Adaptive average pooling to 1x1, flattened to (N, C)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Unit, register_unit


class GlobalAvgPool(nn.Module):
    """Average over H and W: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@register_unit
@dataclass(frozen=True)
class GlobalPool(Unit):
    """Adaptive average pooling to 1x1, flattened to (N, C)."""

    type = "global_pool"

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        c, _, _ = self.maps_input(inp)
        return (c,), 0, 0

    def module(self, c_in: int) -> nn.Module:
        return GlobalAvgPool()
