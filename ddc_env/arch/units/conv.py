"""Conv2d (+ BatchNorm) (+ ReLU or ReLU6): a plain or a depthwise convolution, and its 1x1-kernel form."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import (NEW, TIED, DecisionContext, Form, Ports, SpecError, Unit, UnitDecision, conv_cost, conv_out,
                   copy_bn, copy_conv, l1_out, register_form, register_unit)


class ConvUnit(nn.Module):
    """Conv2d (+ BatchNorm2d) (+ ReLU)."""

    def __init__(self, c_in: int, u: Conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, u.out_channels, u.kernel, u.stride, u.padding, bias=not u.bn, groups=u.groups)
        self.bn = nn.BatchNorm2d(u.out_channels) if u.bn else None
        self.relu, self.relu6 = u.relu, u.relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu6:
            return torch.nn.functional.relu6(x)
        return torch.relu(x) if self.relu else x


@register_unit
@dataclass(frozen=True)
class Conv(Unit):
    """Conv2d (+ BatchNorm) (+ ReLU, or ReLU6 with ``relu6``). Has a bias only when it has no BatchNorm. ``groups`` is 1
    (a plain conv) or equal to its input and output channels (a depthwise conv, whose output channels are tied to its
    input's)."""

    out_channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    bn: bool = True
    relu: bool = True
    groups: int = 1
    relu6: bool = False
    type = "conv"
    obs_kind = "conv"
    defaults_omitted = ("groups", "relu6")

    def depthwise(self, c_in: int) -> bool:
        return self.groups > 1 and self.groups == c_in == self.out_channels

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        c, h, w = self.maps_input(inp)
        oh, ow = (conv_out(s, self.kernel, self.stride, self.padding) for s in (h, w))
        if min(oh, ow) < 1 or self.out_channels < 1:
            raise SpecError(f"{self.name}: conv gives an empty output from {inp}")
        if self.groups != 1 and not self.depthwise(c):
            raise SpecError(f"{self.name}: groups must be 1 or equal to the input and output channels (depthwise), "
                            f"got groups={self.groups} with {c} -> {self.out_channels} channels")
        params, flops = conv_cost(c, self.out_channels, self.kernel, oh * ow, self.bn, self.groups)
        return (self.out_channels, oh, ow), params, flops

    def module(self, c_in: int) -> nn.Module:
        return ConvUnit(c_in, self)

    def output_tie(self, inp: tuple[int, ...]) -> str:
        return TIED if self.depthwise(inp[0]) else NEW

    @property
    def width(self) -> int:
        return self.out_channels

    def resized(self, out: int | None = None, inner: Mapping[str, int] | None = None) -> Conv:
        if out is None or out == self.out_channels:
            return self
        return dataclasses.replace(self, out_channels=out, groups=out if self.groups > 1 else 1)

    def decision(self, ctx: DecisionContext) -> UnitDecision | None:
        if ctx.classifier:
            return None
        tied = self.depthwise(ctx.inp[0])
        removable = not ctx.first and ctx.inp[1:] == ctx.out[1:] and self.stride == 1 and (tied or not ctx.shared)
        own_width = not ctx.shared and not tied
        return UnitDecision(removable, "" if own_width else None, self.out_channels)

    def inherit(self, dst: nn.Module, src: nn.Module, ports: Ports) -> None:
        in_w = src.conv.weight if self.groups > 1 else ports.inputs(src.conv.weight)
        copy_conv(dst.conv, src.conv, ports.out, in_w)
        if dst.bn is not None:
            copy_bn(dst.bn, src.bn, ports.out)

    def importance(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {"": l1_out(module.conv.weight)}

    def activation_points(self, module: nn.Module) -> dict[str, list[nn.Module]]:
        return {"": [module]}

    def stale_batchnorms(self, module: nn.Module, teacher: Unit) -> list[nn.Module]:
        # kept filters of a narrower conv see the teacher's inputs: only another kernel changes the statistics
        same_kernel = isinstance(teacher, Conv) and teacher.kernel == self.kernel
        return [] if module.bn is None or same_kernel else [module.bn]

    def obs_features(self) -> dict[str, float]:
        return {"kernel": self.kernel / 7, "stride": self.stride / 2}


def _kernel_shrinkable(unit: Unit, ctx: DecisionContext) -> bool:
    return (isinstance(unit, Conv) and unit.groups == 1 and unit.kernel > 1 and unit.kernel % 2 == 1
            and unit.padding == unit.kernel // 2)


def _with_kernel_1x1(unit: Unit, keep: Any) -> Unit:
    return dataclasses.replace(unit, kernel=1, padding=0)


KERNEL_1X1 = register_form(Form("kernel_1x1", _kernel_shrinkable, _with_kernel_1x1))
