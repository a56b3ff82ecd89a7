"""Structured filter pruning with KD fine-tuning: filters are physically removed (a smaller spec is built and
inherits the kept filters), never masked.

Each of ``steps`` steps ranks every output channel of every prunable channel space (residual streams,
block inner widths, conv layers, hidden FC layers), removes the lowest-ranked channels until the network's
params (or FLOPs) ratio reaches that step's target (targets fall geometrically to ``ratio``), rebuilds the
smaller network from the kept filters, recalibrates BatchNorm and fine-tunes it by KD from the teacher's
cached logits. A last fine-tune of ``final_epochs`` follows.

Rankings:

- ``taylor`` (Molchanov et al. 2017, "Pruning Convolutional Neural Networks for Resource Efficient
  Inference"): |mean over positions of activation x gradient| per channel, averaged over training images,
  L2-normalised per layer; a residual stream sums the normalised scores of every layer writing it.
- ``l1`` (Li et al. 2017, "Pruning Filters for Efficient ConvNets"): the L1 norm of each channel's filters,
  L2-normalised per channel space so that spaces compare.

Allocation: ``global`` compares normalised scores across all spaces (Molchanov); ``per_layer`` removes the
same fraction of every space at each step and distils after each (the PaKD schedule: alternate pruning and
KD over several stages toward the target). No space goes below ``min_channels`` (or half its teacher count
for thinner ones), the env's floor.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ddc_env.arch import NetSpec, channel_counts, channel_spaces, inherit, inner_key, l1_importance, with_channels
from ddc_env.validate import check_choice, check_number

from .common import Context, PruningSchedule

RANKINGS = ("taylor", "l1")


@dataclass(frozen=True)
class Kwargs(PruningSchedule):
    """The schedule (:class:`~.common.PruningSchedule`; ``ratio`` in (0, 1)) and the ``ranking`` criterion."""

    ranking: str = "taylor"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.ranking, "ranking", RANKINGS)
        check_number(self.ratio, "ratio", minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True)


# ------------------------------------------------------------------------------------------------ ranking


def taylor_importance(net: nn.Module, spec: NetSpec, ctx: Context, n_images: int) -> dict[str, torch.Tensor]:
    """Molchanov's first-order Taylor criterion per channel space, on the KD loss over ``n_images`` of the
    cached first augmentation view."""
    writes, spaces = channel_spaces(spec).writes, channel_counts(spec)  # the classifier's rows are no space
    scores: dict[tuple[str, str], torch.Tensor] = {}  # (space, layer) -> summed |mean_hw(a * g)|
    handles = []

    def watch(space: str, layer: str, module: nn.Module) -> None:
        def forward_hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            def grad_hook(grad: torch.Tensor) -> None:
                product = out.detach().float() * grad.float()
                per_image = product.mean(dim=(2, 3)) if product.dim() == 4 else product
                key = (space, layer)
                scores[key] = scores.get(key, 0) + per_image.abs().sum(0)
            out.register_hook(grad_hook)
        handles.append(module.register_forward_hook(forward_hook))

    for u in spec.units:
        for part, modules in u.activation_points(net.unit(u.name)).items():
            space = writes[u.name] if part == "" else inner_key(u.name, part)
            if space in spaces:
                for i, module in enumerate(modules):
                    watch(space, f"{u.name}[{part}:{i}]", module)

    try:
        ctx.kd_backward(net, n_images)
    finally:
        for h in handles:
            h.remove()
        net.zero_grad(set_to_none=True)
    importance: dict[str, torch.Tensor] = {}
    for (space, _layer), score in scores.items():
        normalised = score / score.norm().clamp_min(1e-12)
        importance[space] = importance[space] + normalised if space in importance else normalised
    return importance


def l1_ranking(net: nn.Module, spec: NetSpec) -> dict[str, torch.Tensor]:
    """Filter L1 norms per channel space, L2-normalised per space."""
    return {k: v.float() / v.float().norm().clamp_min(1e-12) for k, v in l1_importance(net, spec).items()}


# --------------------------------------------------------------------------------------------- allocation


def _cost(spec: NetSpec, target: str) -> int:
    return spec.params if target == "params" else spec.flops


def allocate_global(spec: NetSpec, importance: dict[str, torch.Tensor], floors: dict[str, int], goal: float,
                    target: str) -> dict[str, int]:
    """Channel counts after removing the globally lowest-scored channels until ``spec``'s cost is <= ``goal``
    (or every space is at its floor)."""
    counts = channel_counts(spec)
    order = sorted((float(score), space) for space, scores in importance.items() if space in counts
                   for score in scores.tolist())
    batch = max(1, len(order) // 256)
    for i, (_score, space) in enumerate(order):
        if counts[space] > floors[space]:
            counts[space] -= 1
        if i % batch == 0 and _cost(with_channels(spec, counts), target) <= goal:
            break
    return counts


def allocate_per_layer(spec: NetSpec, floors: dict[str, int], goal: float, target: str) -> dict[str, int]:
    """Channel counts keeping the same (largest) fraction of every space such that the cost is <= ``goal``."""
    counts = channel_counts(spec)

    def shrunk(keep: float) -> dict[str, int]:
        return {k: max(floors[k], min(c, math.floor(c * keep + 0.5))) for k, c in counts.items()}

    low, high = 0.0, 1.0
    for _ in range(30):  # bisection on the kept fraction
        mid = (low + high) / 2
        if _cost(with_channels(spec, shrunk(mid)), target) <= goal:
            low = mid
        else:
            high = mid
    return shrunk(low)


# ------------------------------------------------------------------------------------------------- the run


def run(ctx: Context, *, ranking: str, allocation: str, target: str, ratio: float, steps: int,
        epochs: int | None, final_epochs: int, ranking_images: int) -> None:
    teacher_cost = _cost(ctx.teacher_spec, target)
    spec = ctx.task.student_spec({})  # the teacher's architecture (its classifier narrowed to a class subset)
    net = ctx.distiller.init_student(spec)
    teacher_counts = channel_counts(spec)
    floors = {k: min(ctx.task.min_channels, max(1, c // 2)) for k, c in teacher_counts.items()}
    rank: Callable[[nn.Module, NetSpec], dict[str, torch.Tensor]] = (
        (lambda m, s: taylor_importance(m, s, ctx, ranking_images)) if ranking == "taylor" else l1_ranking)
    start = time.perf_counter()
    for step in ctx.bar(range(1, steps + 1), "prune + KD steps"):
        goal = teacher_cost * ratio ** (step / steps)
        importance = rank(net, spec)
        counts = (allocate_global(spec, importance, floors, goal, target) if allocation == "global"
                  else allocate_per_layer(spec, floors, goal, target))
        smaller = with_channels(spec, counts)
        net = ctx.precision.prepare(inherit(net, spec, smaller, importance=importance).to(ctx.device))
        spec = smaller
        if ctx.distiller.fidelity.recalibrate_bn:
            ctx.distiller.recalibrate(net)
        ctx.finetune(net, epochs)
        ctx.log(f"{ranking} step {step}", ctx.measure(net.eval(), spec=spec, step=step),
                seconds=time.perf_counter() - start)
    if final_epochs:
        ctx.finetune(net, final_epochs)
    label = f"{ranking} {allocation} {target} {ratio:g}"
    ctx.result(label, net, ctx.measure(net.eval(), spec=spec, steps=steps), spec=spec,
               seconds=time.perf_counter() - start, ranking=ranking, allocation=allocation, target=target,
               ratio=ratio)
