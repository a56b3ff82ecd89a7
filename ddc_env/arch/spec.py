"""The network IR: a CNN as an ordered tuple of units, with shapes, analytic costs, JSON and a stable hash.

Units are the registered unit kinds of :mod:`ddc_env.arch.units` (one class per kind, each owning its costs, module,
channel interface, decisions and weight inheritance); this module only chains them.

A unit's input is the output of the unit before it; only output sizes are stored, so removing a unit is
just dropping it and its consumer adapts. Unit names are stable identifiers: a student derived from a teacher
keeps its teacher's unit names, which is how weights are inherited.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .units import UNIT_TYPES, Block, Conv, Flatten, GlobalPool, Linear, Pool, SpecError, Unit


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
        return last.width

    # -- shapes and costs ----------------------------------------------------------------------------
    def shapes(self) -> list[UnitShape]:
        """Per-unit shapes and analytic costs; raises SpecError when the units do not fit together."""
        return list(self._shapes)

    @functools.cached_property
    def _shapes(self) -> tuple[UnitShape, ...]:  # computed once: a spec is immutable
        shape: tuple[int, ...] = (self.in_channels, *self.input_size)
        rows = []
        for u in self.units:
            out, params, flops = u.infer(shape)
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
            "units": [u.to_dict() for u in self.units],
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


__all__ = ["UNIT_TYPES", "Block", "Conv", "Flatten", "GlobalPool", "Linear", "NetSpec", "Pool", "SpecError", "Unit",
           "UnitShape"]
