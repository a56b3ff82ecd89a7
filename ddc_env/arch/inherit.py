"""Initialise a student from its teacher's weights, and re-estimate BatchNorm statistics afterwards.

Kept output channels are the teacher's filters with the largest L1 norm (kept in their original order);
input channels follow the producer's choice. All units writing one residual stream share one channel set,
ranked by the summed L1 norm of every filter that writes it. When a unit's producer was removed, its input
channels no longer correspond to the teacher's: the consumer keeps its input slices of largest L1 norm
(zero-filled when the new producer is wider), and KD training adapts the rest.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import torch
from torch import nn

from .actions import stream_groups
from .build import BlockUnit, ConvUnit, LinearUnit, Net, build
from .spec import Block, Conv, Flatten, Linear, NetSpec

INPUT = "<input>"


def _l1_out(w: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter (dim 0) of a weight tensor."""
    return w.detach().abs().flatten(1).sum(1)


def _top(importance: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` most important entries, in ascending index order."""
    if n >= importance.numel():
        return torch.arange(importance.numel())
    return torch.topk(importance, n).indices.sort().values


def l1_importance(net: Net, spec: NetSpec) -> dict[str, torch.Tensor]:
    """L1 norm of every output channel per channel space of ``net`` (built from ``spec``): stream heads (summed
    over every filter writing the shared stream), '<block>/mid' and Linear names."""
    groups = stream_groups(spec)
    importance: dict[str, torch.Tensor] = {}
    for u in spec.units:
        m = net.unit(u.name)
        if isinstance(u, Conv):
            imp = _l1_out(m.conv.weight)
        elif isinstance(u, Block):
            imp = _l1_out((m.conv3 if u.bottleneck else m.conv2).weight)
            if m.downsample is not None:
                imp = imp + _l1_out(m.downsample[0].weight)
            importance[u.name + "/mid"] = _l1_out(m.conv1.weight)
        elif isinstance(u, Linear):
            importance[u.name] = _l1_out(m.fc.weight)
            continue
        else:
            continue
        head = groups[u.name]
        importance[head] = importance[head] + imp if head in importance else imp
    return importance


def _kept_channels(teacher: Net, tspec: NetSpec, sspec: NetSpec, class_indices: tuple[int, ...] | None,
                   importance: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Kept teacher indices per channel space: stream heads, '<block>/mid', Linear names."""
    groups = stream_groups(tspec)
    importance = {**l1_importance(teacher, tspec), **(importance or {})}
    kept: dict[str, torch.Tensor] = {}
    for u in sspec.units:
        if isinstance(u, (Conv, Block)):
            kept[groups[u.name]] = _top(importance[groups[u.name]], u.out_channels)
            if isinstance(u, Block):
                kept[u.name + "/mid"] = _top(importance[u.name + "/mid"], u.mid_channels)
        elif isinstance(u, Linear):
            if u.name == tspec.units[-1].name and class_indices is not None:
                kept[u.name] = torch.tensor(class_indices, dtype=torch.long)
            else:
                kept[u.name] = _top(importance[u.name], u.out_features)
    return kept


def _input_spaces(spec: NetSpec) -> dict[str, tuple[str, int]]:
    """For each unit: the channel space feeding it and the spatial positions per channel (after Flatten)."""
    groups = stream_groups(spec)
    space, per_channel, out = INPUT, 1, {}
    for row in spec.shapes():
        u = row.unit
        out[u.name] = (space, per_channel)
        if isinstance(u, (Conv, Block)):
            space, per_channel = groups[u.name], 1
        elif isinstance(u, Linear):
            space, per_channel = u.name, 1
        elif isinstance(u, Flatten):
            per_channel = row.inp[1] * row.inp[2]
    return out


def _select_inputs(w: torch.Tensor, per_channel: int, idx: torch.Tensor | None, n_in: int) -> torch.Tensor:
    """Slice a weight's input dim (dim 1) to ``n_in`` channels: by ``idx`` when the producer is the
    teacher's own, else by the input slices' L1 norm (zero-filled if more are needed than exist)."""
    shape = w.shape
    w = w.reshape(shape[0], shape[1] // per_channel, per_channel, *shape[2:])
    if idx is None:
        importance = w.detach().abs().transpose(0, 1).flatten(1).sum(1)
        idx = _top(importance, min(n_in, w.shape[1]))
    w = w[:, idx]
    if w.shape[1] < n_in:
        pad = w.new_zeros(w.shape[0], n_in - w.shape[1], *w.shape[2:])
        w = torch.cat([w, pad], dim=1)
    return w.reshape(shape[0], n_in * per_channel, *shape[2:])


def _copy_conv(dst: nn.Conv2d, src: nn.Conv2d, out_idx: torch.Tensor, in_w: torch.Tensor | None = None) -> None:
    w = (src.weight if in_w is None else in_w)[out_idx]
    if dst.kernel_size != src.kernel_size:  # kernel shrink: keep the centre tap
        k, c = dst.kernel_size[0], src.kernel_size[0] // 2
        w = w[:, :, c - k // 2: c + k // 2 + 1, c - k // 2: c + k // 2 + 1]
    dst.weight.copy_(w)
    if dst.bias is not None:
        dst.bias.copy_(src.bias[out_idx])


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[idx])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


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
    kept[INPUT] = torch.arange(teacher_spec.in_channels)
    t_inputs, s_inputs = _input_spaces(teacher_spec), _input_spaces(student_spec)
    groups = stream_groups(teacher_spec)
    widths = {r.unit.name: r.inp[0] for r in student_spec.shapes()}

    for u in student_spec.units:
        t_space, per_channel = t_inputs[u.name]
        s_space, _ = s_inputs[u.name]
        same_producer = s_space == t_space
        n_in = widths[u.name] // per_channel if isinstance(u, Linear) else widths[u.name]
        in_idx = kept[t_space] if same_producer else None
        src, dst = teacher.unit(u.name), student.unit(u.name)

        def inputs(w: torch.Tensor) -> torch.Tensor:
            return _select_inputs(w, per_channel, in_idx, n_in)

        if isinstance(dst, ConvUnit):
            out_idx = kept[groups[u.name]]
            _copy_conv(dst.conv, src.conv, out_idx, inputs(src.conv.weight))
            if dst.bn is not None:
                _copy_bn(dst.bn, src.bn, out_idx)
        elif isinstance(dst, BlockUnit):
            out_idx, mid_idx = kept[groups[u.name]], kept[u.name + "/mid"]
            _copy_conv(dst.conv1, src.conv1, mid_idx, inputs(src.conv1.weight))
            _copy_bn(dst.bn1, src.bn1, mid_idx)
            if dst.bottleneck:
                _copy_conv(dst.conv2, src.conv2, mid_idx, src.conv2.weight[:, mid_idx])
                _copy_bn(dst.bn2, src.bn2, mid_idx)
                _copy_conv(dst.conv3, src.conv3, out_idx, src.conv3.weight[:, mid_idx])
                _copy_bn(dst.bn3, src.bn3, out_idx)
            else:
                _copy_conv(dst.conv2, src.conv2, out_idx, src.conv2.weight[:, mid_idx])
                _copy_bn(dst.bn2, src.bn2, out_idx)
            if dst.downsample is not None:
                _copy_conv(dst.downsample[0], src.downsample[0], out_idx, inputs(src.downsample[0].weight))
                _copy_bn(dst.downsample[1], src.downsample[1], out_idx)
        elif isinstance(dst, LinearUnit):
            out_idx = kept[u.name]
            dst.fc.weight.copy_(inputs(src.fc.weight)[out_idx])
            dst.fc.bias.copy_(src.fc.bias[out_idx])
    return student


def stale_batchnorms(student: Net, teacher_spec: NetSpec, student_spec: NetSpec) -> list[nn.Module]:
    """The BatchNorm layers of an inherited ``student`` whose input distribution differs from the teacher's.

    A BN layer keeps exact statistics for the channels it kept as long as everything before it computes what the
    teacher computes: the units before the first changed (removed, narrowed, kernel-shrunk) unit, and within the
    first changed unit the BN right after an unchanged input (a narrower conv's kept filters see the teacher's
    inputs). Every BN after that is stale: re-estimating the exact ones too would only add sampling noise, and on
    a class subset it would fit them to a distribution the teacher's later layers were not trained on.
    """
    teacher_units = {u.name: u for u in teacher_spec.units}
    kept = {u.name for u in student_spec.units}
    stale: list[nn.Module] = []
    changed = False  # whether the current unit's input differs from the teacher's
    for t_unit in teacher_spec.units:
        if t_unit.name not in kept:
            changed = True
            continue
        u = student_spec.unit(t_unit.name)
        m = student.unit(u.name)
        bns = [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]
        if changed:
            stale += bns
        elif isinstance(u, Conv) and m.bn is not None and u.kernel != teacher_units[u.name].kernel:
            stale.append(m.bn)
        elif isinstance(u, Block) and u.mid_channels != teacher_units[u.name].mid_channels:
            stale += [m.bn2] + ([m.bn3] if m.bottleneck else [])
        changed = changed or u != teacher_units[u.name]
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
