"""Structural pruning by the ``torch-pruning`` library (DepGraph, Fang et al. 2023, "DepGraph: Towards Any Structural
Pruning"): the fair pruning reference, next to the hand-written ``l1_pruning`` / ``taylor_pruning`` / ``pakd``.

The teacher's module (a copy, its classifier narrowed to the task's classes) is pruned by torch-pruning's
``MetaPruner``, which finds the coupled parameters of every channel (a residual stream's convs, BatchNorms and
consumers) and removes them together. Each of ``steps`` steps picks the pruning ratio that brings the network to that
step's goal (goals fall geometrically to ``ratio`` times the teacher's params, FLOPs or model latency), by bisection
on what torch-pruning would remove; then prunes, maps the module back to a :class:`~ddc_env.arch.NetSpec`
(:func:`ddc_env.arch.spec_of_pruned`), recalibrates BatchNorm and fine-tunes by KD. A last fine-tune of
``final_epochs`` follows.
Since every result is a spec, its params, FLOPs and latency come from the same code as every other record.

The library prunes only the env's channel spaces (:func:`~ddc_env.arch.channel_counts`): any layer whose outputs
are not one (the classifier) is ignored. Its channel counts are rounded the env's way (to a multiple of ``round_to``
where the teacher's count is one) and never fall below the env's floor (``min_channels``, or half the teacher's
count for thinner spaces).

Importance (torch-pruning's criteria, named as in its CIFAR benchmarks): ``magnitude`` the group L1 norm (``l1``),
``group_norm`` the group L2 norm (DepGraph's), ``taylor`` first-order Taylor |w * dL/dw| on the KD loss.

Allocation: ``global`` ranks every channel of the network together (torch-pruning's ``global_pruning``);
``per_layer`` removes the same fraction of every space; ``sensitivity`` is Li et al. 2017 ("Pruning Filters for
Efficient ConvNets"): each space is pruned alone at each of ``sensitivity_ratios`` on the teacher and the
validation accuracy measured without training (BatchNorm recalibrated, the env's ``zero`` fidelity steps); a space
gets the largest ratio up to which the drop stays within ``max_drop``, sensitive spaces are left alone, and the
steps move every space the same fraction of the way to its safe ratio (torch-pruning's ``pruning_ratio_dict``).
When even the safe ratios (or the floors) leave the network above the goal, the result stops there and its
``reached_ratio`` says so.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch_pruning as tp
from torch import nn

from ddc_env.arch import (Net, NetSpec, channel_counts, channel_dims, inherit, round_channels, spec_of_pruned,
                          with_channels)
from ddc_env.latency import LatencyModel
from ddc_env.validate import check_choice, check_int, check_number, check_numbers

from .common import Context, PruningSchedule

IMPORTANCES = ("magnitude", "taylor", "group_norm")
TOLERANCE = 0.02  # the ratio search stops once a step's cost is within 2% below its goal
SEARCH_STEPS = 14  # bisection steps at most: a resolution of 6e-5 of the ratio, below one channel in 4,000


@dataclass(frozen=True)
class Kwargs(PruningSchedule):
    """The schedule (:class:`~.common.PruningSchedule`; ``ratio`` in (0, 1], 1 = no pruning; ``ranking_images``
    for the Taylor gradients), the ``importance`` criterion, ``round_to`` / ``min_channels`` (channel rounding and
    floor, None = the task's), and for the sensitivity allocation ``sensitivity_ratios`` / ``max_drop``: the ratios
    each space is tried at and the largest validation accuracy drop (a fraction, 0.02 = 2 points) a safe ratio may
    cost."""

    ALLOCATIONS: ClassVar[tuple[str, ...]] = ("global", "per_layer", "sensitivity")
    TARGETS: ClassVar[tuple[str, ...]] = ("params", "flops", "latency")

    importance: str = "magnitude"
    round_to: int | None = None
    min_channels: int | None = None
    sensitivity_ratios: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
    max_drop: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.importance, "importance", IMPORTANCES)
        check_number(self.ratio, "ratio", minimum=0.0, maximum=1.0, exclusive_minimum=True)
        for name in ("round_to", "min_channels"):
            check_int(getattr(self, name), name, minimum=1, optional=True)
        ratios = check_numbers(self.sensitivity_ratios, "sensitivity_ratios", minimum=0.0, maximum=1.0,
                               exclusive_minimum=True, exclusive_maximum=True)
        object.__setattr__(self, "sensitivity_ratios", tuple(sorted(set(ratios))))
        check_number(self.max_drop, "max_drop", minimum=0.0, maximum=1.0)


# ------------------------------------------------------------------------------------- pruning by spaces


def make_importance(name: str) -> tp.importance.Importance:
    """torch-pruning's criterion ``name`` of :data:`IMPORTANCES`, configured as in its CIFAR benchmarks."""
    check_choice(name, "importance", IMPORTANCES)
    if name == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "group_norm":
        return tp.importance.GroupMagnitudeImportance(p=2)
    return tp.importance.GroupTaylorImportance()


@dataclass(frozen=True)
class Plan:
    """What one pruning step removes: the channel counts it leaves and, per group root, torch-pruning's pruning
    function and the channel indices it removes (applied through ``graph``)."""

    counts: dict[str, int]
    removals: tuple[tuple[nn.Module, Callable, tuple[int, ...]], ...]
    graph: tp.DependencyGraph


class SpacePruner:
    """torch-pruning on ``net`` (a module built from ``spec``), in the IR's channel spaces: :meth:`plan` asks the
    library what it would remove at a ratio without touching ``net``; :meth:`apply` removes it and returns the
    pruned module rebuilt from its spec. ``teacher_counts`` (the teacher's channel counts) with ``round_to`` and
    ``min_channels`` set each space's rounding and floor as :func:`~ddc_env.arch.round_channels` does."""

    def __init__(self, net: nn.Module, spec: NetSpec, importance: tp.importance.Importance, *,
                 teacher_counts: Mapping[str, int], round_to: int, min_channels: int) -> None:
        self.net, self.spec, self.importance = net, spec, importance
        self.counts = channel_counts(spec)
        self.teacher_counts, self.round_to, self.min_channels = dict(teacher_counts), round_to, min_channels
        self.floors = {s: min(c, self.rounded(s, 0)) for s, c in self.counts.items()}
        dims = channel_dims(spec)
        self.space_of: dict[nn.Module, str] = {}  # every module whose weight's dim 0 is a channel space
        self.ignored: list[nn.Module] = []  # modules with a weight whose outputs are no channel space
        for name, module in net.named_modules():
            if "weight" not in dict(module.named_parameters(recurse=False)):
                continue
            sized = dims.get((f"{name}.weight", 0))
            if sized is None:
                self.ignored.append(module)
            else:
                self.space_of[module] = sized[0]
        device = next(net.parameters()).device
        self.example = torch.zeros(1, spec.in_channels, *spec.input_size, device=device)
        self.scores: dict[nn.Module, torch.Tensor | None] = {}  # per group root: the net does not change

    def score(self, group: tp.dependency.Group) -> torch.Tensor | None:
        """torch-pruning's importance of ``group``'s channels (computed once per group root), the best
        ``floor`` of them set to +inf so that no ranking takes a space below its floor."""
        root = group[0].dep.target.module
        if root not in self.scores:
            scores = self.importance(group)
            if scores is not None:
                scores = scores.float().clone()
                scores[scores.topk(min(self.floors[self.space_of[root]], len(scores))).indices] = math.inf
            self.scores[root] = scores
        return self.scores[root]

    def rounded(self, space: str, count: int) -> int:
        """``count`` channels of ``space`` rounded and floored the env's way (relative to the teacher's count)."""
        teacher = self.teacher_counts[space]
        return round_channels(teacher, count / teacher, self.round_to, self.min_channels)

    @property
    def global_limit(self) -> float:
        """The largest global ratio: the one that takes every space to its floor."""
        removable = sum(c - self.floors[s] for s, c in self.counts.items())
        return max(0.0, (removable - 0.5) / sum(self.counts.values()))

    def plan(self, ratios: float | Mapping[str, float]) -> Plan:
        """What torch-pruning removes at ``ratios``: a float ranks every channel of every space together (global
        pruning: that fraction of all channels goes, least important first); a mapping prunes each listed space by
        its own fraction (ranked within the space; unlisted spaces keep every channel). Each space's count is then
        rounded and floored (:meth:`rounded`), keeping its most important channels."""
        if isinstance(ratios, Mapping):
            # a ratio that would leave a space no channel makes torch-pruning skip it: stop it at the floor (the
            # library keeps int(count * (1 - ratio)) channels)
            caps = {s: 1.0 - (self.floors[s] + 0.5) / c for s, c in self.counts.items()}
            per_module = {m: min(ratios[s], caps[s]) for m, s in self.space_of.items() if s in ratios}
            options = {"pruning_ratio": 0.0, "pruning_ratio_dict": per_module}
        else:
            options = {"pruning_ratio": min(ratios, self.global_limit), "global_pruning": True}
        was_training = self.net.training
        try:  # building the dependency graph runs the module once in eval mode
            pruner = tp.pruner.MetaPruner(self.net, self.example, importance=self.score, ignored_layers=self.ignored,
                                          **options)
            counts, removals = dict(self.counts), []
            for group in pruner.step(interactive=True):
                root, handler = group[0].dep.target.module, group[0].dep.handler
                if root not in self.space_of:
                    raise ValueError(f"torch-pruning prunes the outputs of {root}, which are no channel space")
                space = self.space_of[root]
                keep = min(self.counts[space], self.rounded(space, self.counts[space] - len(group[0].idxs)))
                if keep < self.counts[space]:
                    order = torch.argsort(self.scores[root])  # least important first
                    removed = tuple(sorted(order[: self.counts[space] - keep].tolist()))
                    counts[space] = keep
                    removals.append((root, handler, removed))
        finally:
            self.net.train(was_training)
        return Plan(counts, tuple(removals), pruner.DG)

    def reach(self, goal: float, cost: Callable[[Mapping[str, int]], float],
              ratios_at: Callable[[float], float | Mapping[str, float]], limit: float) -> tuple[float, Plan]:
        """The smallest knob in [0, ``limit``] whose plan (of ``ratios_at(knob)``) costs at most ``goal`` (``cost``
        of its counts), found by bisection that stops once within :data:`TOLERANCE` below the goal; with its plan.
        When even ``limit``'s plan costs more than ``goal``, that plan."""
        if cost(self.counts) <= goal:
            return 0.0, self.plan(ratios_at(0.0))
        low, high = 0.0, limit
        best = self.plan(ratios_at(high))
        for _ in range(SEARCH_STEPS):
            if cost(best.counts) > goal or cost(best.counts) >= goal * (1 - TOLERANCE):
                break
            middle = (low + high) / 2
            plan = self.plan(ratios_at(middle))
            if cost(plan.counts) <= goal:
                high, best = middle, plan
            else:
                low = middle
        return high, best

    def apply(self, plan: Plan) -> tuple[Net, NetSpec]:
        """Prune ``net`` in place by ``plan`` (a plan of this pruner) and return it rebuilt from its spec: a
        :class:`~ddc_env.arch.Net` holding the pruned tensors, and that spec."""
        for root, handler, removed in plan.removals:
            plan.graph.get_pruning_group(root, handler, list(removed)).prune()
        state = self.net.state_dict()
        spec = spec_of_pruned(self.spec, state)
        with torch.device("meta"):
            pruned = Net(spec)
        pruned.load_state_dict(state, strict=True, assign=True)
        return pruned.train(self.net.training), spec


# ------------------------------------------------------------------------------------------ sensitivity


def _copy_with_gradients(net: Net) -> Net:
    """A deep copy of ``net`` whose parameters also carry copies of ``net``'s gradients."""
    twin = copy.deepcopy(net)
    for mine, theirs in zip(twin.parameters(), net.parameters()):
        mine.grad = None if theirs.grad is None else theirs.grad.clone()
    return twin


def sensitivity(ctx: Context, net: Net, make_pruner: Callable[[Net], SpacePruner],
                ratios: tuple[float, ...], max_drop: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Li et al.'s sensitivity analysis: each channel space of ``net`` pruned alone at each of ``ratios`` (by the
    pruner's importance), BatchNorm recalibrated, validation accuracy measured without training. Returns each
    space's safe ratio (the largest up to which the accuracy drop stays within ``max_drop``; 0 when none is) and
    the accuracies, space -> ratio -> val_acc."""
    base = ctx.distiller.accuracy(net)
    safe: dict[str, float] = {}
    table: dict[str, dict[str, float]] = {}
    for space in ctx.bar(list(channel_counts(net.spec)), "sensitivity"):
        safe[space], table[space] = 0.0, {}
        for ratio in ratios:
            pruner = make_pruner(_copy_with_gradients(net))
            trial, _spec = pruner.apply(pruner.plan({space: ratio}))
            trial = ctx.precision.prepare(trial.to(ctx.device))
            if ctx.distiller.fidelity.recalibrate_bn:
                ctx.distiller.recalibrate(trial)
            table[space][f"{ratio:g}"] = accuracy = ctx.distiller.accuracy(trial)
            if base - accuracy > max_drop:
                break
            safe[space] = ratio
    return safe, table


def toward_safe(pruner: SpacePruner, safe: Mapping[str, float], fraction: float) -> dict[str, float]:
    """Per-space pruning ratios of ``pruner``'s network that take each space ``fraction`` of the way (in teacher
    channels) to its safe ratio."""
    ratios = {}
    for space, ratio in safe.items():
        goal = pruner.teacher_counts[space] * (1.0 - fraction * ratio)
        ratios[space] = max(0.0, 1.0 - goal / pruner.counts[space])
    return ratios


# ------------------------------------------------------------------------------------------------- the run


def _cost(ctx: Context, target: str) -> Callable[[NetSpec], float]:
    """A spec's cost under ``target``: params, FLOPs, or the time of the scorer's latency model (a model with the
    scorer's timing protocol when its records are not timed by one)."""
    if target == "params":
        return lambda spec: spec.params
    if target == "flops":
        return lambda spec: spec.flops
    model = ctx.scorer.latency_model() or LatencyModel(ctx.scorer.protocol)
    return model.predict_ms


def run(ctx: Context, *, importance: str, allocation: str, target: str, ratio: float, steps: int, epochs: int | None,
        final_epochs: int, round_to: int | None, min_channels: int | None, ranking_images: int,
        sensitivity_ratios: tuple[float, ...], max_drop: float) -> None:
    start = time.perf_counter()
    cost_of = _cost(ctx, target)
    teacher_cost = cost_of(ctx.teacher_spec)
    spec = ctx.task.student_spec({})  # the teacher's architecture (its classifier narrowed to a class subset)
    net = ctx.precision.prepare(inherit(ctx.teacher_net, ctx.teacher_spec, spec,
                                        class_indices=ctx.task.class_indices).to(ctx.device))
    criterion = make_importance(importance)
    teacher_counts = channel_counts(spec)
    rounding = {"teacher_counts": teacher_counts, "round_to": round_to or ctx.task.channel_round,
                "min_channels": min_channels or ctx.task.min_channels}

    def make_pruner(module: Net) -> SpacePruner:
        return SpacePruner(module, module.spec, criterion, **rounding)

    def gradients() -> None:
        if importance == "taylor":
            net.zero_grad(set_to_none=True)
            ctx.kd_backward(net, ranking_images)

    extra: dict[str, Any] = {}
    if allocation == "sensitivity":
        gradients()
        safe, table = sensitivity(ctx, net, make_pruner, sensitivity_ratios, max_drop)
        extra = {"safe_ratios": safe, "sensitivity": table}
    for step in ctx.bar(range(1, steps + 1), "prune + KD steps"):
        goal = teacher_cost * ratio ** (step / steps)
        gradients()
        pruner = make_pruner(net)

        def cost(counts: Mapping[str, int]) -> float:
            return cost_of(with_channels(pruner.spec, counts))

        if allocation == "global":
            knob, plan = pruner.reach(goal, cost, float, pruner.global_limit)
        elif allocation == "per_layer":
            knob, plan = pruner.reach(goal, cost, lambda x: dict.fromkeys(pruner.counts, x), 1.0)
        else:
            knob, plan = pruner.reach(goal, cost, lambda x: toward_safe(pruner, extra["safe_ratios"], x), 1.0)
        net.zero_grad(set_to_none=True)
        net, spec = pruner.apply(plan)
        net = ctx.precision.prepare(net.to(ctx.device))
        if ctx.distiller.fidelity.recalibrate_bn:
            ctx.distiller.recalibrate(net)
        ctx.finetune(net, epochs)
        ctx.log(f"{importance} step {step}", ctx.measure(net.eval(), spec=spec, step=step, pruning_ratio=knob,
                                                          goal_ratio=goal / teacher_cost),
                seconds=time.perf_counter() - start)
    if final_epochs:
        ctx.finetune(net, final_epochs)
    ctx.result(f"{importance} {allocation} {target} {ratio:g}", net, ctx.measure(net.eval(), spec=spec, steps=steps),
               spec=spec, seconds=time.perf_counter() - start, importance=importance, allocation=allocation,
               target=target, ratio=ratio, reached_ratio=cost_of(spec) / teacher_cost, channels=channel_counts(spec),
               **extra)
