"""Initialise a student from its teacher's weights, and re-estimate BatchNorm statistics afterwards.

Kept output channels are the teacher's filters with the largest L1 norm (kept in their original order);
input channels follow the producer's choice. All units writing one channel space (a residual stream, a depthwise
conv and its producer) share one channel set, ranked by the summed L1 norm of every filter that writes it. When a
unit's producer was removed, its input channels no longer correspond to the teacher's: the consumer keeps its input
slices of largest L1 norm (zero-filled when the new producer is wider), and KD training adapts the rest. What each
unit copies is its kind's business (:meth:`~ddc_env.arch.units.Unit.inherit`).
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import torch
from torch import nn

from .build import Net, build
from .channels import INPUT, channel_spaces, inner_key
from .spec import NetSpec
from .units import Ports
from .units.base import select_inputs, top_channels

__all__ = ["INPUT", "inherit", "l1_importance", "recalibrate_batchnorm", "stale_batchnorms"]


def l1_importance(net: Net, spec: NetSpec) -> dict[str, torch.Tensor]:
    """L1 norm of every output channel per channel space of ``net`` (built from ``spec``): spaces by the unit
    starting them (summed over every unit writing a shared space), inner spaces (``'<block>/mid'``), and the
    classifier's rows."""
    writes = channel_spaces(spec).writes
    importance: dict[str, torch.Tensor] = {}
    for u in spec.units:
        for part, scores in u.importance(net.unit(u.name)).items():
            key = writes[u.name] if part == "" else inner_key(u.name, part)
            importance[key] = importance[key] + scores if key in importance else scores
    return importance


def _kept_channels(teacher: Net, tspec: NetSpec, sspec: NetSpec, class_indices: tuple[int, ...] | None,
                   importance: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Kept teacher indices per channel space of the student."""
    t_writes, s_writes = channel_spaces(tspec).writes, channel_spaces(sspec).writes
    importance = {**l1_importance(teacher, tspec), **(importance or {})}
    classifier = tspec.units[-1].name
    kept: dict[str, torch.Tensor] = {INPUT: torch.arange(tspec.in_channels)}
    for u in sspec.units:
        if u.name in s_writes:
            space = t_writes[u.name]  # decided once, by the unit that starts it (the input: all its channels)
            if space == classifier and class_indices is not None:
                kept[space] = torch.tensor(class_indices, dtype=torch.long)
            elif space not in kept:  # in the order that unit writes it
                kept[space] = u.output_order(top_channels(importance[space], u.width), teacher.unit(u.name))
        for inner in u.inner_spaces:
            key = inner_key(u.name, inner)
            kept[key] = top_channels(importance[key], u.inner_width(inner))
    return kept


@torch.no_grad()
def inherit(teacher: Net, teacher_spec: NetSpec, student_spec: NetSpec, *,
            class_indices: tuple[int, ...] | None = None,
            importance: Mapping[str, torch.Tensor] | None = None) -> Net:
    """Build ``student_spec`` initialised from ``teacher`` (a module built from ``teacher_spec``).

    ``class_indices`` keeps only those rows of the classifier (the student of a class subset);
    ``importance`` ranks the channels of the given channel spaces (keys as :func:`l1_importance`'s) instead of
    their L1 norm, e.g. a pruning criterion.
    """
    student = build(student_spec)
    kept = _kept_channels(teacher, teacher_spec, student_spec, class_indices, importance)
    t_spaces, s_spaces = channel_spaces(teacher_spec), channel_spaces(student_spec)
    widths = {r.unit.name: r.inp[0] for r in student_spec.shapes()}
    for u in student_spec.units:
        t_space, per_channel = t_spaces.feeds[u.name]
        same_producer = s_spaces.feeds[u.name][0] == t_space
        in_idx = kept[t_space] if same_producer else None
        n_in = widths[u.name] // per_channel

        def inputs(w: torch.Tensor, per_channel: int = per_channel, in_idx: torch.Tensor | None = in_idx,
                   n_in: int = n_in) -> torch.Tensor:
            return select_inputs(w, per_channel, in_idx, n_in)

        out = kept.get(t_spaces.writes.get(u.name, ""))
        inner = {s: kept[inner_key(u.name, s)] for s in u.inner_spaces}
        u.inherit(student.unit(u.name), teacher.unit(u.name), Ports(out, inner, inputs, in_idx))
    return student


def stale_batchnorms(student: Net, teacher_spec: NetSpec, student_spec: NetSpec) -> list[nn.Module]:
    """The BatchNorm layers of an inherited ``student`` whose input distribution differs from the teacher's.

    A BN layer keeps exact statistics for the channels it kept as long as everything before it computes what the
    teacher computes: the units before the first changed (removed, narrowed, reshaped) unit, and within the first
    changed unit what its kind says stays exact (:meth:`~ddc_env.arch.units.Unit.stale_batchnorms`). Every BN after
    that is stale: re-estimating the exact ones too would only add sampling noise, and on a class subset it would fit
    them to a distribution the teacher's later layers were not trained on.
    """
    kept = {u.name for u in student_spec.units}
    stale: list[nn.Module] = []
    changed = False  # whether the current unit's input differs from the teacher's
    for t_unit in teacher_spec.units:
        if t_unit.name not in kept:
            changed = True
            continue
        u = student_spec.unit(t_unit.name)
        m = student.unit(u.name)
        if changed:
            stale += [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]
        elif u != t_unit:
            stale += u.stale_batchnorms(m, t_unit)
        changed = changed or u != t_unit
    return stale


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor],
                          only: Collection[nn.Module] | None = None) -> int:
    """Re-estimate BatchNorm running statistics as a cumulative average over ``batches`` (already normalised
    inputs); returns the number of images seen. ``only``: the BN layers to re-estimate (default all); the others
    keep their statistics and normalise with them during the pass, as at inference. Restores the model's modes and
    BN momenta."""
    all_bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    chosen = {id(m) for m in only} if only is not None else {id(m) for m in all_bns}
    bns = [m for m in all_bns if id(m) in chosen]
    if not bns:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.eval()
    for bn in bns:
        bn.train()
    seen = 0
    for x in batches:
        model(x)
        seen += x.shape[0]
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    for m, mode in modes:
        m.training = mode
    return seen
