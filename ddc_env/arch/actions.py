"""Decisions on a teacher spec (remove a unit, shrink a width, shrink a kernel) and the student they give.

Every decision point a teacher offers is listed by :func:`decision_table`, in network order. Applying any
set of allowed choices with :func:`apply_decisions` yields a valid student spec by construction:

- the first conv, downsampling units (stride > 1 or a size change), projection blocks and the classifier
  are never removable; a removed unit's consumer takes its producer's channels;
- the residual stream of a ResNet stage (the stem or projection block that starts it, plus every identity
  block it feeds) shares one channel set, so its width is one ``stage<k>`` decision; each block's inner
  width is a decision of its own;
- channel counts are rounded to a multiple of ``channel_round`` (when the teacher's count is one) with a
  floor of ``min_channels`` (or half the teacher's count, for thinner layers); the student spec stores the
  resulting integers, so its hash is what is built.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

from .spec import Block, Conv, Linear, NetSpec, SpecError, Unit

REMOVE = "remove"
N2N_WIDTHS: tuple[float, ...] = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class ActionError(ValueError):
    """A choice that the teacher's decision table does not allow."""


@dataclass(frozen=True)
class Keep:
    """Keep a unit at ``width`` times its teacher's channels, optionally with a smaller (1x1) kernel."""

    width: float = 1.0
    kernel: int | None = None


Choice = Union[str, float, Keep]


@dataclass(frozen=True)
class Decision:
    """One decision point: a unit (remove / width / kernel) or a stage (shared residual-stream width)."""

    name: str
    kind: str  # "unit" | "stage"
    unit: str  # the unit decided on; for a stage, the unit that starts its stream
    removable: bool
    shrinkable: bool
    kernel_shrinkable: bool
    channels: int  # the teacher's channel count that the width scales
    members: tuple[str, ...] = ()  # for a stage: every unit writing the shared stream


def stream_groups(spec: NetSpec) -> dict[str, str]:
    """Map each Conv/Block unit to the unit that starts its residual stream (itself unless it is an
    identity block, which joins the stream of the channel unit before it)."""
    groups: dict[str, str] = {}
    last: str | None = None
    for u in spec.units:
        if isinstance(u, (Conv, Block)):
            is_identity = isinstance(u, Block) and u.shortcut == "identity"
            groups[u.name] = groups[last] if (is_identity and last is not None) else u.name
            last = u.name
        elif isinstance(u, Linear):
            last = None
    return groups


def _members(groups: dict[str, str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for unit, head in groups.items():
        out.setdefault(head, []).append(unit)
    return {head: tuple(m) for head, m in out.items()}


def decision_table(spec: NetSpec) -> list[Decision]:
    """All decision points of ``spec`` in network order (stage decisions just before their first unit)."""
    groups = stream_groups(spec)
    members = _members(groups)
    first_channel_unit = next((u.name for u in spec.units if isinstance(u, (Conv, Block))), None)
    classifier = spec.units[-1].name
    table: list[Decision] = []
    stage = 0
    for row in spec.shapes():
        u = row.unit
        shared = u.name in members and len(members[u.name]) > 1
        if shared:
            stage += 1
            table.append(Decision(f"stage{stage}", "stage", u.name, False, True, False,
                                  row.out[0], members[u.name]))
        if isinstance(u, Conv):
            same_shape = row.inp[1:] == row.out[1:]
            removable = u.name != first_channel_unit and same_shape and u.stride == 1 and not shared
            kernel_shrinkable = u.kernel > 1 and u.kernel % 2 == 1 and u.padding == u.kernel // 2
            if removable or not shared or kernel_shrinkable:
                table.append(Decision(u.name, "unit", u.name, removable, not shared, kernel_shrinkable,
                                      u.out_channels))
        elif isinstance(u, Block):
            table.append(Decision(u.name, "unit", u.name, u.shortcut == "identity", True, False,
                                  u.mid_channels))
        elif isinstance(u, Linear) and u.name != classifier:
            table.append(Decision(u.name, "unit", u.name, True, True, False, u.out_features))
    return table


def round_channels(channels: int, width: float, channel_round: int = 8, min_channels: int = 8) -> int:
    """``width * channels`` rounded to a multiple of ``channel_round`` (if ``channels`` is one), at most
    ``channels`` and at least ``min_channels`` (half the teacher's count for layers thinner than that)."""
    if width >= 1.0:
        return channels
    step = channel_round if channels % channel_round == 0 else 1
    n = max(step, int(channels * width / step + 0.5) * step, min(min_channels, max(1, channels // 2)))
    return min(n, channels)


def _as_keep(name: str, choice: Choice) -> Keep | None:
    """Normalise a choice; None means remove."""
    if isinstance(choice, str):
        if choice != REMOVE:
            raise ActionError(f"{name}: unknown choice {choice!r}; use {REMOVE!r}, a width or Keep(...)")
        return None
    keep = choice if isinstance(choice, Keep) else Keep(float(choice))
    if not 0.0 < keep.width <= 1.0:
        raise ActionError(f"{name}: width must be in (0, 1], got {keep.width}")
    if keep.kernel not in (None, 1):
        raise ActionError(f"{name}: the only kernel shrink is to 1, got {keep.kernel}")
    return keep


def apply_decisions(teacher: NetSpec, choices: Mapping[str, Choice], *, channel_round: int = 8,
                    min_channels: int = 8, class_indices: tuple[int, ...] | None = None) -> NetSpec:
    """The student spec for ``choices`` (decision name -> REMOVE | width | Keep); unlisted = keep at 1.0.

    ``class_indices`` narrows the classifier to a subset of the teacher's classes (data-driven compression).
    """
    table = {d.name: d for d in decision_table(teacher)}
    unknown = sorted(set(choices) - set(table))
    if unknown:
        raise ActionError(f"unknown decision(s) {unknown}; this spec has {list(table)}")
    keeps: dict[str, Keep | None] = {}
    for name, choice in choices.items():
        d, keep = table[name], _as_keep(name, choice)
        if keep is None and not d.removable:
            raise ActionError(f"{name} cannot be removed")
        if keep is not None and keep.width < 1.0 and not d.shrinkable:
            raise ActionError(f"{name} cannot be shrunk")
        if keep is not None and keep.kernel is not None and not d.kernel_shrinkable:
            raise ActionError(f"{name} has no kernel to shrink")
        keeps[name] = keep

    def width_of(channels: int, name: str) -> int:
        keep = keeps.get(name, Keep())
        return round_channels(channels, keep.width if keep else 1.0, channel_round, min_channels)

    stage_width = {d.unit: width_of(d.channels, d.name) for d in table.values() if d.kind == "stage"}
    groups = stream_groups(teacher)
    classifier = teacher.units[-1].name
    units: list[Unit] = []
    for u in teacher.units:
        if u.name in keeps and keeps[u.name] is None:
            continue
        stream = stage_width.get(groups.get(u.name, ""))
        if isinstance(u, Conv):
            kernel = (keeps.get(u.name) or Keep()).kernel
            out = stream if stream is not None else width_of(u.out_channels, u.name)
            units.append(Conv(u.name, out, kernel or u.kernel, u.stride, 0 if kernel else u.padding, u.bn, u.relu))
        elif isinstance(u, Block):
            out = stream if stream is not None else u.out_channels
            units.append(Block(u.name, out, width_of(u.mid_channels, u.name), u.stride, u.shortcut,
                               u.bottleneck, u.kernel))
        elif isinstance(u, Linear):
            if u.name == classifier:
                out = len(class_indices) if class_indices is not None else u.out_features
            else:
                out = width_of(u.out_features, u.name)
            units.append(Linear(u.name, out, u.relu))
        else:
            units.append(u)
    student = NetSpec(tuple(units), teacher.in_channels, teacher.input_size, teacher.arch)
    try:
        student.shapes()
    except SpecError as e:  # a bug in the rules above, never the caller's fault
        raise AssertionError(f"decisions produced an invalid student: {e}") from e
    return student


def channel_counts(spec: NetSpec) -> dict[str, int]:
    """Channel count of every prunable channel space: residual streams (by the unit starting them), block inner
    widths ('<block>/mid') and hidden Linear layers (the classifier is not a space)."""
    groups, classifier = stream_groups(spec), spec.units[-1].name
    counts: dict[str, int] = {}
    for u in spec.units:
        if isinstance(u, (Conv, Block)):
            counts.setdefault(groups[u.name], u.out_channels)
            if isinstance(u, Block):
                counts[u.name + "/mid"] = u.mid_channels
        elif isinstance(u, Linear) and u.name != classifier:
            counts[u.name] = u.out_features
    return counts


def with_channels(spec: NetSpec, counts: Mapping[str, int]) -> NetSpec:
    """``spec`` with the channel spaces in ``counts`` (keys as :func:`channel_counts`'s) set to exact counts."""
    groups = stream_groups(spec)
    units: list[Unit] = []
    for u in spec.units:
        if isinstance(u, Conv):
            u = dataclasses.replace(u, out_channels=counts.get(groups[u.name], u.out_channels))
        elif isinstance(u, Block):
            u = dataclasses.replace(u, out_channels=counts.get(groups[u.name], u.out_channels),
                                    mid_channels=counts.get(u.name + "/mid", u.mid_channels))
        elif isinstance(u, Linear):
            u = dataclasses.replace(u, out_features=counts.get(u.name, u.out_features))
        units.append(u)
    return dataclasses.replace(spec, units=tuple(units))


def choices_from_widths(widths: Mapping[str, float], kernel_1x1: Mapping[str, bool] | None = None
                        ) -> dict[str, Choice]:
    """Choices from their recorded form (an info's or a table's widths, 0.0 = removed; ``kernel_1x1`` marks
    kernels shrunk to 1)."""
    return {name: REMOVE if w == 0.0 else Keep(w, kernel=1) if (kernel_1x1 or {}).get(name) else w
            for name, w in widths.items()}


def uniform_choices(spec: NetSpec, width: float) -> dict[str, Choice]:
    """Every shrinkable decision at the same ``width`` (the uniform-width reference)."""
    return {d.name: width for d in decision_table(spec) if d.shrinkable}
