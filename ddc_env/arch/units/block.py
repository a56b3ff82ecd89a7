"""Residual block in torchvision's layout (basic: 3x3-3x3; bottleneck: 1x1-kxk-1x1)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .base import (DecisionContext, Ports, ResidualStream, SpecError, Unit, UnitDecision, conv_cost, conv_out,
                   copy_bn, copy_conv, l1_out, register_unit, summed)


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


@register_unit
@dataclass(frozen=True)
class Block(ResidualStream, Unit):
    """Residual block in torchvision's layout (basic: 3x3-3x3; bottleneck: 1x1-kxk-1x1).

    ``mid_channels`` is the inner width (inner space ``"mid"``), ``out_channels`` the width of the residual stream.
    The shortcut is the identity (needs stride 1 and equal widths; the block then writes the stream it reads) or a
    1x1 conv + BN projection (the block starts a stream)."""

    out_channels: int
    mid_channels: int
    stride: int = 1
    shortcut: str = "identity"
    bottleneck: bool = False
    kernel: int = 3
    type = "block"
    obs_kind = "block"
    inner_spaces = ("mid",)

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        c, h, w = self.maps_input(inp)
        self.check_shortcut(c, ("identity", "projection"))
        if min(self.mid_channels, self.out_channels) < 1:
            raise SpecError(f"{self.name}: a block needs at least one channel")
        oh, ow = (conv_out(s, self.kernel, self.stride, self.kernel // 2) for s in (h, w))
        if min(oh, ow) < 1:
            raise SpecError(f"{self.name}: block gives an empty output from {inp}")
        m, o, k, hw = self.mid_channels, self.out_channels, self.kernel, oh * ow
        if self.bottleneck:
            costs = [conv_cost(c, m, 1, h * w, True), conv_cost(m, m, k, hw, True), conv_cost(m, o, 1, hw, True)]
        else:
            costs = [conv_cost(c, m, k, hw, True), conv_cost(m, o, k, hw, True)]
        if self.shortcut == "projection":
            costs.append(conv_cost(c, o, 1, hw, True))
        return summed((o, oh, ow), costs)

    def module(self, c_in: int) -> nn.Module:
        return BlockUnit(c_in, self)

    def inner_width(self, space: str) -> int:
        return {"mid": self.mid_channels}[space]

    def resized(self, out: int | None = None, inner: Mapping[str, int] | None = None) -> Block:
        mid = (inner or {}).get("mid", self.mid_channels)
        out = self.out_channels if out is None else out
        return dataclasses.replace(self, out_channels=out, mid_channels=mid)

    def decision(self, ctx: DecisionContext) -> UnitDecision | None:
        return UnitDecision(self.shortcut == "identity", "mid", self.mid_channels)

    def inherit(self, dst: nn.Module, src: nn.Module, ports: Ports) -> None:
        out_idx, mid_idx = ports.out, ports.inner["mid"]
        copy_conv(dst.conv1, src.conv1, mid_idx, ports.inputs(src.conv1.weight))
        copy_bn(dst.bn1, src.bn1, mid_idx)
        if dst.bottleneck:
            copy_conv(dst.conv2, src.conv2, mid_idx, src.conv2.weight[:, mid_idx])
            copy_bn(dst.bn2, src.bn2, mid_idx)
            copy_conv(dst.conv3, src.conv3, out_idx, src.conv3.weight[:, mid_idx])
            copy_bn(dst.bn3, src.bn3, out_idx)
        else:
            copy_conv(dst.conv2, src.conv2, out_idx, src.conv2.weight[:, mid_idx])
            copy_bn(dst.bn2, src.bn2, out_idx)
        if dst.downsample is not None:
            copy_conv(dst.downsample[0], src.downsample[0], out_idx, ports.inputs(src.downsample[0].weight))
            copy_bn(dst.downsample[1], src.downsample[1], out_idx)

    def importance(self, module: nn.Module) -> dict[str, torch.Tensor]:
        out = l1_out((module.conv3 if self.bottleneck else module.conv2).weight)
        if module.downsample is not None:
            out = out + l1_out(module.downsample[0].weight)
        return {"": out, "mid": l1_out(module.conv1.weight)}

    def activation_points(self, module: nn.Module) -> dict[str, list[nn.Module]]:
        # a*g before the ReLU equals a*g after it (the ReLU zeroes both alike)
        return {"": [module], "mid": [module.bn1, module.bn2] if self.bottleneck else [module.bn1]}

    def stale_batchnorms(self, module: nn.Module, teacher: Unit) -> list[nn.Module]:
        if isinstance(teacher, Block) and teacher.mid_channels == self.mid_channels:
            return []  # kept output channels of the teacher's own inner convs: exact statistics
        return [module.bn2] + ([module.bn3] if self.bottleneck else [])

    def obs_features(self) -> dict[str, float]:
        return {"kernel": self.kernel / 7, "stride": self.stride / 2}
