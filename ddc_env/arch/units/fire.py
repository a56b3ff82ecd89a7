"""SqueezeNet's Fire module as a form of a plain convolution: squeeze 1x1 -> expand 1x1 + expand kxk, concatenated.

The form ``"fire"`` (``Keep(width, form="fire", param=squeeze_ratio)``) replaces a kxk "same" convolution by a Fire
module with ``squeeze = round(squeeze_ratio * out_channels)`` squeeze channels and its outputs split evenly between
the 1x1 and the kxk expand, followed by the conv's BatchNorm and ReLU. It inherits the teacher conv's weights by a
low-rank factorisation over input channels:

- the teacher's kernel ``W`` (O x I x k x k) is read as an (O·k·k) x I matrix; its truncated SVD ``U S V^T`` at
  rank ``squeeze`` gives the squeeze conv (``V^T``) and the kxk expand (``U S``, back to O x squeeze x k x k). The
  squeeze is linear (no activation between squeeze and expand, unlike SqueezeNet's ReLU), so the kxk branch is
  **exact** when ``squeeze`` >= the rank of that matrix (min(O·k·k, I)) and the best rank-``squeeze`` approximation
  (in Frobenius norm) otherwise;
- the 1x1 branch takes the kept filters whose energy is most concentrated in their centre tap, each approximated by
  its centre tap projected onto the squeeze's row space: **approximate** (the filter's other taps are dropped);
- output channels come out as [1x1 filters, kxk filters], each group in teacher order; the conv's BatchNorm follows
  that order, and so do the consumer's inputs. The BatchNorm statistics are re-estimated as for any changed unit.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import (NEW, DecisionContext, Form, Ports, SpecError, Unit, conv_cost, conv_out, copy_bn, l1_out,
                   register_form, register_unit, summed)
from .conv import Conv


class FireUnit(nn.Module):
    """squeeze (1x1, linear) -> [expand 1x1, expand kxk] concatenated -> BatchNorm -> ReLU."""

    def __init__(self, c_in: int, u: Fire) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, u.squeeze_channels, 1, bias=False)
        self.expand1x1 = nn.Conv2d(u.squeeze_channels, u.expand1x1_channels, 1, u.stride, bias=False)
        self.expandkxk = nn.Conv2d(u.squeeze_channels, u.expandkxk_channels, u.kernel, u.stride, u.kernel // 2,
                                   bias=False)
        self.bn = nn.BatchNorm2d(u.out_channels)
        self.relu = u.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        x = self.bn(torch.cat([self.expand1x1(s), self.expandkxk(s)], dim=1))
        return torch.relu(x) if self.relu else x


@register_unit
@dataclass(frozen=True)
class Fire(Unit):
    """A Fire module (see the module docstring): ``out_channels`` = 1x1 expand (the first half) + kxk expand."""

    out_channels: int
    squeeze_channels: int
    kernel: int = 3
    stride: int = 1
    relu: bool = True
    type = "fire"
    obs_kind = "conv"

    @property
    def expand1x1_channels(self) -> int:
        return self.out_channels // 2

    @property
    def expandkxk_channels(self) -> int:
        return self.out_channels - self.out_channels // 2

    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        c, h, w = self.maps_input(inp)
        if self.out_channels < 2 or self.squeeze_channels < 1 or self.kernel % 2 == 0:
            raise SpecError(f"{self.name}: a Fire module needs >= 2 output channels, >= 1 squeeze channel and an odd "
                            f"kernel")
        oh, ow = (conv_out(s, self.kernel, self.stride, self.kernel // 2) for s in (h, w))
        costs = [conv_cost(c, self.squeeze_channels, 1, h * w, False),
                 conv_cost(self.squeeze_channels, self.expand1x1_channels, 1, oh * ow, False),
                 conv_cost(self.squeeze_channels, self.expandkxk_channels, self.kernel, oh * ow, False)]
        # no biases (conv_cost's bias terms) but one BatchNorm over the concatenation
        costs.append((self.out_channels - self.squeeze_channels, 0))
        return summed((self.out_channels, oh, ow), costs)

    def module(self, c_in: int) -> nn.Module:
        return FireUnit(c_in, self)

    def output_tie(self, inp: tuple[int, ...]) -> str:
        return NEW

    @property
    def width(self) -> int:
        return self.out_channels

    def resized(self, out: int | None = None, inner: Mapping[str, int] | None = None) -> Fire:
        return self if out is None else Fire(self.name, out, self.squeeze_channels, self.kernel, self.stride,
                                             self.relu)

    def output_order(self, kept: torch.Tensor, teacher: nn.Module) -> torch.Tensor:
        """The kept teacher filters in this unit's output order: the most centre-concentrated half first (its 1x1
        expand), then the rest (its kxk expand), each in teacher order."""
        w = teacher.conv.weight.detach()[kept].flatten(2)
        centre = w[:, :, w.shape[2] // 2].pow(2).sum(1) / w.pow(2).sum((1, 2)).clamp_min(1e-12)
        first = torch.topk(centre, self.expand1x1_channels).indices.sort().values
        rest = torch.tensor([i for i in range(len(kept)) if i not in set(first.tolist())], dtype=torch.long)
        return torch.cat([kept[first], kept[rest]])

    def inherit(self, dst: nn.Module, src: nn.Module, ports: Ports) -> None:
        w = ports.inputs(src.conv.weight)[ports.out].float()  # O x I x k x k, in this unit's output order
        o, i, k, _ = w.shape
        n1, rank = self.expand1x1_channels, self.squeeze_channels
        u, s, vh = torch.linalg.svd(w[n1:].permute(0, 2, 3, 1).reshape(-1, i), full_matrices=False)
        rank_kept = min(rank, vh.shape[0])
        squeeze = torch.zeros(rank, i)
        squeeze[:rank_kept] = vh[:rank_kept]
        expand = torch.zeros((o - n1) * k * k, rank)
        expand[:, :rank_kept] = u[:, :rank_kept] * s[:rank_kept]
        dst.squeeze.weight.copy_(squeeze[:, :, None, None])
        dst.expandkxk.weight.copy_(expand.reshape(o - n1, k, k, rank).permute(0, 3, 1, 2))
        dst.expand1x1.weight.copy_((w[:n1, :, k // 2, k // 2] @ squeeze.T)[:, :, None, None])
        copy_bn(dst.bn, src.bn, ports.out)

    def importance(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {"": torch.cat([l1_out(module.expand1x1.weight), l1_out(module.expandkxk.weight)])}

    def activation_points(self, module: nn.Module) -> dict[str, list[nn.Module]]:
        return {"": [module]}

    def obs_features(self) -> dict[str, float]:
        return {"kernel": self.kernel / 7, "stride": self.stride / 2}


def _fire_offered(unit: Unit, ctx: DecisionContext) -> bool:
    return (isinstance(unit, Conv) and unit.groups == 1 and unit.bn and unit.kernel > 1 and unit.kernel % 2 == 1
            and unit.padding == unit.kernel // 2 and not ctx.first and not ctx.shared and unit.out_channels >= 2)


def _as_fire(unit: Unit, keep: Any) -> Unit:
    ratio = 0.25 if keep.param is None else keep.param
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"{unit.name}: the fire form's squeeze ratio must be in (0, 1], got {ratio}")
    out = unit.out_channels
    return Fire(unit.name, out, max(1, round(ratio * out)), unit.kernel, unit.stride, unit.relu)


FIRE = register_form(Form("fire", _fire_offered, _as_fire))
