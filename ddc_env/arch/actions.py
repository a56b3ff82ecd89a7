"""Decisions on a teacher spec (remove a unit, shrink a width, keep a unit in another form) and the student they give.

Every decision point a teacher offers is listed by :func:`decision_table`, in network order; each unit kind says
what it offers in its place (:meth:`~ddc_env.arch.units.Unit.decision`, forms such as a 1x1 kernel). Applying any
set of allowed choices with :func:`apply_decisions` yields a valid student spec by construction:

- the first unit with channels, downsampling units (stride > 1 or a size change), projection blocks and the
  classifier are never removable; a removed unit's consumer takes its producer's channels;
- a channel space written by several units (a ResNet stage's stream: the stem or projection block that starts it
  plus every identity block it feeds), or by a unit whose own decision does not scale it, is one ``stage<k>``
  decision; each unit's own width (a conv's output, a block's inner width) is a decision of its own;
- channel counts are rounded to a multiple of ``channel_round`` (when the teacher's count is one) with a
  floor of ``min_channels`` (or half the teacher's count, for thinner layers); the student spec stores the
  resulting integers, so its hash is what is built.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Union

from .channels import channel_counts, channel_spaces, inner_key, resized_unit, stream_groups, with_channels
from .spec import NetSpec, SpecError, Unit
from .units import FORMS, DecisionContext

__all__ = ["N2N_WIDTHS", "REMOVE", "ActionError", "Choice", "Decision", "Keep", "apply_decisions", "channel_counts",
           "decision_table", "round_channels", "stream_groups", "uniform_choices",
           "with_channels"]

REMOVE = "remove"
N2N_WIDTHS: tuple[float, ...] = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class ActionError(ValueError):
    """A choice that the teacher's decision table does not allow."""


@dataclass(frozen=True)
class Keep:
    """Keep a unit at ``width`` times its teacher's channels, optionally in another registered form: ``kernel=1``
    (the form ``"kernel_1x1"``: its kernel shrunk to 1x1) or ``form="fire"`` with its ``param`` (a squeeze ratio)."""

    width: float = 1.0
    kernel: int | None = None
    form: str | None = None
    param: float | None = None

    def __post_init__(self) -> None:
        if self.kernel == 1 and self.form is None:
            object.__setattr__(self, "form", "kernel_1x1")
        elif self.form == "kernel_1x1" and self.kernel is None:
            object.__setattr__(self, "kernel", 1)


Choice = Union[str, float, Keep]


@dataclass(frozen=True)
class Decision:
    """One decision point: a unit (remove / width / form) or a stage (a shared channel space's width). ``space`` is
    the channel space its width scales (a key of :func:`channel_counts`; "" when it has none); ``forms`` the forms
    its unit may take."""

    name: str
    kind: str  # "unit" | "stage"
    unit: str  # the unit decided on; for a stage, the unit that starts its space
    removable: bool
    shrinkable: bool
    kernel_shrinkable: bool
    channels: int  # the teacher's channel count that the width scales
    members: tuple[str, ...] = ()  # for a stage: every unit writing the shared space
    space: str = ""
    forms: tuple[str, ...] = ()


def decision_table(spec: NetSpec) -> list[Decision]:
    """All decision points of ``spec`` in network order (stage decisions just before their first unit)."""
    spaces = channel_spaces(spec)
    first = next((u.name for u in spec.units if u.name in spaces.writes), None)
    classifier = spec.units[-1].name
    table: list[Decision] = []
    stage = 0
    for row in spec.shapes():
        u = row.unit
        space = spaces.writes.get(u.name)
        members = spaces.members.get(space, ()) if space is not None else ()
        ctx = DecisionContext(row.inp, row.out, u.name == first, u.name == classifier, len(members) > 1)
        offer = u.decision(ctx)
        own_width = offer is not None and offer.space == ""
        if space == u.name and not ctx.classifier and (ctx.shared or not own_width):
            stage += 1
            table.append(Decision(f"stage{stage}", "stage", u.name, False, True, False, row.out[0], members,
                                  space=u.name))
        forms = tuple(name for name, form in FORMS.items() if not ctx.classifier and form.offered(u, ctx))
        if offer is None or not (offer.removable or offer.space is not None or forms):
            continue
        scaled = "" if offer.space is None else space if offer.space == "" else inner_key(u.name, offer.space)
        table.append(Decision(u.name, "unit", u.name, offer.removable, offer.space is not None,
                              "kernel_1x1" in forms, offer.channels, space=scaled or "", forms=forms))
    return table


def round_channels(channels: int, width: float, channel_round: int = 8, min_channels: int = 8) -> int:
    """``width * channels`` rounded to a multiple of ``channel_round`` (if ``channels`` is one), at most
    ``channels`` and at least ``min_channels`` (half the teacher's count for layers thinner than that)."""
    if width >= 1.0:
        return channels
    step = channel_round if channels % channel_round == 0 else 1
    n = max(step, int(channels * width / step + 0.5) * step, min(min_channels, max(1, channels // 2)))
    return min(n, channels)


def as_keep(name: str, choice: Choice) -> Keep | None:
    """Normalise a choice; None means remove."""
    if isinstance(choice, str):
        if choice != REMOVE:
            raise ActionError(f"{name}: unknown choice {choice!r}; use {REMOVE!r}, a width or Keep(...)")
        return None
    keep = choice if isinstance(choice, Keep) else Keep(float(choice))
    if not 0.0 < keep.width <= 1.0:
        raise ActionError(f"{name}: width must be in (0, 1], got {keep.width}")
    if keep.kernel not in (None, 1) or (keep.kernel == 1 and keep.form != "kernel_1x1"):
        raise ActionError(f"{name}: the only kernel shrink is to 1 (form 'kernel_1x1'), got {keep}")
    if keep.form is not None and keep.form not in FORMS:
        raise ActionError(f"{name}: unknown form {keep.form!r}; registered: {sorted(FORMS)}")
    return keep


def _checked(table: Mapping[str, Decision], choices: Mapping[str, Choice]) -> dict[str, Keep | None]:
    unknown = sorted(set(choices) - set(table))
    if unknown:
        raise ActionError(f"unknown decision(s) {unknown}; this spec has {list(table)}")
    keeps: dict[str, Keep | None] = {}
    for name, choice in choices.items():
        d, keep = table[name], as_keep(name, choice)
        if keep is None and not d.removable:
            raise ActionError(f"{name} cannot be removed")
        if keep is not None and keep.width < 1.0 and not d.shrinkable:
            raise ActionError(f"{name} cannot be shrunk")
        if keep is not None and keep.form is not None and keep.form not in d.forms:
            what = "has no kernel to shrink" if keep.form == "kernel_1x1" else f"cannot take the form {keep.form!r}"
            raise ActionError(f"{name} {what} (its forms: {list(d.forms)})")
        keeps[name] = keep
    return keeps


def apply_decisions(teacher: NetSpec, choices: Mapping[str, Choice], *, channel_round: int = 8,
                    min_channels: int = 8, class_indices: tuple[int, ...] | None = None) -> NetSpec:
    """The student spec for ``choices`` (decision name -> REMOVE | width | Keep); unlisted = keep at 1.0.

    ``class_indices`` narrows the classifier to a subset of the teacher's classes (data-driven compression).
    """
    table = {d.name: d for d in decision_table(teacher)}
    keeps = _checked(table, choices)
    counts = {d.space: round_channels(d.channels, keep.width, channel_round, min_channels)
              for name, keep in keeps.items() if keep is not None and (d := table[name]).shrinkable}
    classifier = teacher.units[-1].name
    if class_indices is not None:
        counts[classifier] = len(class_indices)
    spaces = channel_spaces(teacher)
    units: list[Unit] = []
    for u in teacher.units:
        if u.name in keeps and keeps[u.name] is None:
            continue
        student_unit = resized_unit(u, spaces, counts)
        keep = keeps.get(u.name)
        if keep is not None and keep.form is not None:
            student_unit = FORMS[keep.form].apply(student_unit, keep)
        units.append(student_unit)
    student = NetSpec(tuple(units), teacher.in_channels, teacher.input_size, teacher.arch)
    try:
        student.shapes()
    except SpecError as e:  # a bug in the rules above, never the caller's fault
        raise AssertionError(f"decisions produced an invalid student: {e}") from e
    return student


def uniform_choices(spec: NetSpec, width: float) -> dict[str, Choice]:
    """Every shrinkable decision at the same ``width`` (the uniform-width reference)."""
    return {d.name: width for d in decision_table(spec) if d.shrinkable}

