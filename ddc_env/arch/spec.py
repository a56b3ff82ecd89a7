"""The network IR: a CNN as an ordered tuple of units, with shapes, analytic costs, JSON and a stable hash.

A unit's input is the output of the unit before it; only output sizes are stored, so removing a unit is
just dropping it and its consumer adapts. Unit names are stable identifiers: a student derived from a teacher
keeps its teacher's unit names, which is how weights are inherited.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Union


class SpecError(ValueError):
    """An invalid network spec (shapes do not fit, unknown unit type, malformed JSON)."""


@dataclass(frozen=True)
class Conv:
    """Conv2d (+ BatchNorm) (+ ReLU). Has a bias only when it has no BatchNorm."""

    name: str
    out_channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    bn: bool = True
    relu: bool = True
    type: ClassVar[str] = "conv"


@dataclass(frozen=True)
class Pool:
    """Max or average pooling."""

    name: str
    mode: str = "max"
    kernel: int = 2
    stride: int = 2
    padding: int = 0
    type: ClassVar[str] = "pool"


@dataclass(frozen=True)
class Block:
    """Residual block in torchvision's layout (basic: 3x3-3x3; bottleneck: 1x1-kxk-1x1).

    ``mid_channels`` is the inner width, ``out_channels`` the width of the residual stream. The shortcut is
    the identity (needs stride 1 and equal widths) or a 1x1 conv + BN projection.
    """

    name: str
    out_channels: int
    mid_channels: int
    stride: int = 1
    shortcut: str = "identity"
    bottleneck: bool = False
    kernel: int = 3
    type: ClassVar[str] = "block"


@dataclass(frozen=True)
class GlobalPool:
    """Adaptive average pooling to 1x1, flattened to (N, C)."""

    name: str
    type: ClassVar[str] = "global_pool"


@dataclass(frozen=True)
class Flatten:
    """Flatten (N, C, H, W) to (N, C*H*W)."""

    name: str
    type: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class Linear:
    """Fully connected layer (+ ReLU)."""

    name: str
    out_features: int
    relu: bool = False
    type: ClassVar[str] = "linear"


Unit = Union[Conv, Pool, Block, GlobalPool, Flatten, Linear]
UNIT_TYPES: dict[str, type] = {cls.type: cls for cls in (Conv, Pool, Block, GlobalPool, Flatten, Linear)}
CHANNEL_UNITS = (Conv, Block)  # units that produce a new set of feature maps


@dataclass(frozen=True)
class UnitShape:
    """Input and output shape of one unit, per sample: (C, H, W) for maps, (F,) for vectors."""

    unit: Unit
    inp: tuple[int, ...]
    out: tuple[int, ...]
    params: int
    flops: int


@dataclass(frozen=True)
class NetSpec:
    """A whole network: input size plus an ordered tuple of uniquely named units."""

    units: tuple[Unit, ...]
    in_channels: int = 3
    input_size: tuple[int, int] = (32, 32)
    arch: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "input_size", tuple(self.input_size))
        names = [u.name for u in self.units]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise SpecError(f"unit names must be unique; repeated: {duplicated}")

    # -- lookup --------------------------------------------------------------------------------------
    def unit(self, name: str) -> Unit:
        for u in self.units:
            if u.name == name:
                return u
        raise KeyError(f"no unit named {name!r} in this spec")

    @property
    def names(self) -> list[str]:
        return [u.name for u in self.units]

    @property
    def num_classes(self) -> int:
        last = self.units[-1]
        if not isinstance(last, Linear):
            raise SpecError("the last unit must be the Linear classifier")
        return last.out_features

    # -- shapes and costs ----------------------------------------------------------------------------
    def shapes(self) -> list[UnitShape]:
        """Per-unit shapes and analytic costs; raises SpecError when the units do not fit together."""
        return list(self._shapes)

    @functools.cached_property
    def _shapes(self) -> tuple[UnitShape, ...]:  # computed once: a spec is immutable
        shape: tuple[int, ...] = (self.in_channels, *self.input_size)
        rows = []
        for u in self.units:
            out, params, flops = _unit_cost(u, shape)
            rows.append(UnitShape(u, shape, out, params, flops))
            shape = out
        if len(shape) != 1:
            raise SpecError(f"the network must end in a vector (Linear classifier), ends in shape {shape}")
        return tuple(rows)

    @property
    def params(self) -> int:
        """Number of parameters of the built module."""
        return sum(r.params for r in self.shapes())

    @property
    def flops(self) -> int:
        """FLOPs of one sample's forward pass, counted as torch.utils.flop_counter does (2 per MAC of
        convolutions and matrix products)."""
        return sum(r.flops for r in self.shapes())

    # -- serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "units": [{"type": u.type, **dataclasses.asdict(u)} for u in self.units],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetSpec":
        try:
            units = []
            for raw in d["units"]:
                fields = dict(raw)
                kind = fields.pop("type")
                if kind not in UNIT_TYPES:
                    raise SpecError(f"unknown unit type {kind!r}; allowed: {sorted(UNIT_TYPES)}")
                units.append(UNIT_TYPES[kind](**fields))
            return cls(tuple(units), int(d["in_channels"]), tuple(d["input_size"]), d.get("arch", "custom"))
        except (KeyError, TypeError) as e:
            raise SpecError(f"malformed NetSpec dict: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "NetSpec":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise SpecError(f"NetSpec JSON does not parse: {e}") from None

    def hash(self) -> str:
        """Stable hash of everything that determines the built module (not the ``arch`` label)."""
        return self._hash

    @functools.cached_property
    def _hash(self) -> str:  # computed once: a spec is immutable
        d = self.to_dict()
        d.pop("arch")
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _conv_cost(c_in: int, c_out: int, k: int, out_hw: int, bn: bool) -> tuple[int, int]:
    params = c_in * c_out * k * k + (2 * c_out if bn else c_out)
    return params, 2 * c_in * c_out * k * k * out_hw


def _unit_cost(u: Unit, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    """Output shape, params and FLOPs of unit ``u`` on an input of per-sample ``shape``."""
    if isinstance(u, Linear):
        if len(shape) != 1:
            raise SpecError(f"{u.name}: Linear needs a vector input (add Flatten/GlobalPool), got {shape}")
        return (u.out_features,), shape[0] * u.out_features + u.out_features, 2 * shape[0] * u.out_features
    if len(shape) != 3:
        raise SpecError(f"{u.name}: {u.type} needs a (C, H, W) input, got {shape}")
    c, h, w = shape
    if isinstance(u, Flatten):
        return (c * h * w,), 0, 0
    if isinstance(u, GlobalPool):
        return (c,), 0, 0
    if isinstance(u, Pool):
        oh, ow = (_conv_out(s, u.kernel, u.stride, u.padding) for s in (h, w))
        if u.mode not in ("max", "avg"):
            raise SpecError(f"{u.name}: pool mode must be 'max' or 'avg', got {u.mode!r}")
        if min(oh, ow) < 1:
            raise SpecError(f"{u.name}: pooling {h}x{w} maps leaves nothing")
        return (c, oh, ow), 0, 0
    if isinstance(u, Conv):
        oh, ow = (_conv_out(s, u.kernel, u.stride, u.padding) for s in (h, w))
        if min(oh, ow) < 1 or u.out_channels < 1:
            raise SpecError(f"{u.name}: conv gives an empty output from {shape}")
        params, flops = _conv_cost(c, u.out_channels, u.kernel, oh * ow, u.bn)
        return (u.out_channels, oh, ow), params, flops
    if isinstance(u, Block):
        if u.shortcut not in ("identity", "projection"):
            raise SpecError(f"{u.name}: shortcut must be 'identity' or 'projection', got {u.shortcut!r}")
        if u.shortcut == "identity" and (u.stride != 1 or c != u.out_channels):
            raise SpecError(f"{u.name}: an identity shortcut needs stride 1 and {c} == {u.out_channels} channels")
        if min(u.mid_channels, u.out_channels) < 1:
            raise SpecError(f"{u.name}: a block needs at least one channel")
        pad = u.kernel // 2
        oh, ow = (_conv_out(s, u.kernel, u.stride, pad) for s in (h, w))
        if min(oh, ow) < 1:
            raise SpecError(f"{u.name}: block gives an empty output from {shape}")
        hw_out = oh * ow
        m, o, k = u.mid_channels, u.out_channels, u.kernel
        if u.bottleneck:
            costs = [_conv_cost(c, m, 1, h * w, True), _conv_cost(m, m, k, hw_out, True),
                     _conv_cost(m, o, 1, hw_out, True)]
        else:
            costs = [_conv_cost(c, m, k, hw_out, True), _conv_cost(m, o, k, hw_out, True)]
        if u.shortcut == "projection":
            costs.append(_conv_cost(c, o, 1, hw_out, True))
        return (o, oh, ow), sum(p for p, _ in costs), sum(f for _, f in costs)
    raise SpecError(f"unknown unit {u!r}")
