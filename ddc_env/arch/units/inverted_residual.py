"""MobileNetV2's inverted residual block: expand 1x1 -> depthwise kxk -> project 1x1 (linear), with an identity
shortcut when it keeps its input's shape.

Channel ties: the depthwise conv runs on the expansion's channels (inner space ``"hidden"``: the expansion conv's
outputs and the depthwise conv's channels are one set), so narrowing ``hidden`` is choosing a smaller expansion ratio
(``hidden = t * in_channels * width``). A block without an expansion conv (``t = 1``) runs its depthwise conv on its
input's channels, tied to them. A block with the identity shortcut writes the stream it reads (one width per stage).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .base import (DecisionContext, Ports, ResidualStream, SpecError, Unit, UnitDecision, conv_cost, conv_out,
                   copy_bn, copy_conv, l1_out, register_unit, summed, top_channels)


class InvertedResidualUnit(nn.Module):
    """[expand 1x1 + BN + ReLU6] -> depthwise kxk + BN + ReLU6 -> project 1x1 + BN (+ input)."""

    def __init__(self, c_in: int, u: InvertedResidual) -> None:
        super().__init__()
        hidden = u.hidden_channels if u.expand else c_in
        if u.expand:
            self.expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw_conv = nn.Conv2d(hidden, hidden, u.kernel, u.stride, u.kernel // 2, groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.project_conv = nn.Conv2d(hidden, u.out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(u.out_channels)
        self.expand, self.residual = u.expand, u.shortcut == "identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.expand_bn(self.expand_conv(x))) if self.expand else x
        h = F.relu6(self.dw_bn(self.dw_conv(h)))
        h = self.project_bn(self.project_conv(h))
        return x + h if self.residual else h


@register_unit
@dataclass(frozen=True)
class InvertedResidual(ResidualStream, Unit):
    """MobileNetV2's inverted residual block (see the module docstring). ``hidden_channels`` is the expanded width
    (``t * in_channels`` in the teacher; ignored without ``expand``); ``shortcut`` "identity" (stride 1, equal widths)
    or "none"."""

    out_channels: int
    hidden_channels: int
    stride: int = 1
    expand: bool = True
    shortcut: str = "none"
    kernel: int = 3
    type = "inverted_residual"
    obs_kind = "block"

    @property
    def inner_spaces(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("hidden",) if self.expand else ()

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        c, h, w = self.maps_input(inp)
        self.check_shortcut(c, ("identity", "none"))
        hidden = self.hidden_channels if self.expand else c
        if min(hidden, self.out_channels) < 1:
            raise SpecError(f"{self.name}: an inverted residual block needs at least one channel")
        oh, ow = (conv_out(s, self.kernel, self.stride, self.kernel // 2) for s in (h, w))
        if min(oh, ow) < 1:
            raise SpecError(f"{self.name}: block gives an empty output from {inp}")
        costs = [conv_cost(hidden, hidden, self.kernel, oh * ow, True, groups=hidden),
                 conv_cost(hidden, self.out_channels, 1, oh * ow, True)]
        if self.expand:
            costs.append(conv_cost(c, hidden, 1, h * w, True))
        return summed((self.out_channels, oh, ow), costs)

    def module(self, c_in: int) -> nn.Module:
        return InvertedResidualUnit(c_in, self)

    def inner_width(self, space: str) -> int:
        if space != "hidden" or not self.expand:
            raise KeyError(space)
        return self.hidden_channels

    def resized(self, out: int | None = None, inner: Mapping[str, int] | None = None) -> InvertedResidual:
        hidden = (inner or {}).get("hidden", self.hidden_channels)
        return dataclasses.replace(self, out_channels=self.out_channels if out is None else out,
                                   hidden_channels=hidden)

    def decision(self, ctx: DecisionContext) -> UnitDecision | None:
        return UnitDecision(self.shortcut == "identity", "hidden" if self.expand else None,
                            self.hidden_channels if self.expand else 0)

    def inherit(self, dst: nn.Module, src: nn.Module, ports: Ports) -> None:
        if self.expand:
            hidden = ports.inner["hidden"]
            copy_conv(dst.expand_conv, src.expand_conv, hidden, ports.inputs(src.expand_conv.weight))
            copy_bn(dst.expand_bn, src.expand_bn, hidden)
        else:  # the depthwise conv runs on the input's channels: the producer's, or its largest-L1 filters
            n = dst.dw_conv.weight.shape[0]
            hidden = ports.in_idx if ports.in_idx is not None else top_channels(l1_out(src.dw_conv.weight), n)
        copy_conv(dst.dw_conv, src.dw_conv, hidden)
        copy_bn(dst.dw_bn, src.dw_bn, hidden)
        copy_conv(dst.project_conv, src.project_conv, ports.out, src.project_conv.weight[:, hidden])
        copy_bn(dst.project_bn, src.project_bn, ports.out)

    def importance(self, module: nn.Module) -> dict[str, torch.Tensor]:
        scores = {"": l1_out(module.project_conv.weight)}
        if self.expand:
            scores["hidden"] = l1_out(module.expand_conv.weight) + l1_out(module.dw_conv.weight)
        return scores

    def activation_points(self, module: nn.Module) -> dict[str, list[nn.Module]]:
        points: dict[str, list[nn.Module]] = {"": [module]}
        if self.expand:
            points["hidden"] = [module.expand_bn, module.dw_bn]
        return points

    def stale_batchnorms(self, module: nn.Module, teacher: Unit) -> list[nn.Module]:
        if isinstance(teacher, InvertedResidual) and teacher.hidden_channels == self.hidden_channels:
            return []  # kept channels of the teacher's own convs on the teacher's inputs: exact statistics
        return [module.project_bn]  # the expansion and depthwise BNs keep exact statistics for their kept channels

    def obs_features(self) -> dict[str, float]:
        return {"kernel": self.kernel / 7, "stride": self.stride / 2}
