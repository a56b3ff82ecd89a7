"""Knowledge distillation into a fixed, hand-designed student (Hinton et al. 2015), as DDC compares against
with its small VGG (64-M-128-M-256-256-M-512-M-512-M + FC), and its teacher-assistant variant
(``kd_pyramid``; Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher Assistant"): a chain
teacher -> assistants -> student in which every model is distilled from the one before it.

Every model is randomly initialised (a hand-designed student has no teacher weights to inherit) from the run's
seed, so ``kd_student`` and ``kd_pyramid`` students of the same size start from the same weights and differ
only in whom they learnt from. Distillation uses the env's recipe (loss, optimiser, schedule, batch size) on
the evaluator's cached augmented views; an assistant's logits are computed once on those same views.

Default assistants (``chain=True`` without ``assistants``): two models of the student's own family whose
parameter counts lie geometrically between the student's (S) and the teacher's (T), at about
``S^(2/3) T^(1/3)`` and ``S^(1/3) T^(2/3)`` (params grow with width squared: widths
``width * (T/S)^(k/6)``, k = 2, 1; capped at 1.0 for zoo families, which cannot widen). The same family
rather than the teacher's architecture at reduced width, because only interpolated sizes are guaranteed to
lie between teacher and student (a uniformly thinned ResNet-18 can be smaller than the small VGG), and TAKD's
gain comes from bridging the size gap. Assistants that channel rounding makes identical to each other, or
not strictly between the student and the teacher in params, are dropped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ddc_env.arch import NetSpec, apply_decisions, build, uniform_choices
from ddc_env.models import MODELS, ddc_small_vgg, get_model_spec
from ddc_env.validate import check_bool, check_choice, check_int, check_number, check_numbers

from .common import Context

SMALL_VGG = "ddc_small_vgg"
DEFAULT_ASSISTANTS = 2


@dataclass(frozen=True)
class Kwargs:
    """``student``: ``"ddc_small_vgg"`` or a zoo model name (:data:`ddc_env.models.MODELS`) at ``width``
    (> 0 for the small VGG, in (0, 1] for zoo models); ``epochs`` / ``lr``: KD epochs and peak learning rate per
    model (None = the fidelity's); ``chain``: distil through teacher assistants (``kd_pyramid``);
    ``assistants``: their widths in the student's family, largest first, each above ``width`` (empty = the
    default sizes, see the module docstring)."""

    student: str = SMALL_VGG
    width: float = 1.0
    epochs: int | None = None
    lr: float | None = None
    chain: bool = False
    assistants: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_choice(self.student, "student", [SMALL_VGG, *sorted(MODELS)])
        width = {"minimum": 0.0, "exclusive_minimum": True, "maximum": None if self.student == SMALL_VGG else 1.0}
        object.__setattr__(self, "width", check_number(self.width, "width", **width))
        check_int(self.epochs, "epochs", optional=True)
        object.__setattr__(self, "lr", check_number(self.lr, "lr", minimum=0.0, exclusive_minimum=True,
                                                    optional=True))
        check_bool(self.chain, "chain")
        assistants = check_numbers(self.assistants, "assistants (widths)", allow_empty=True, **width)
        if assistants and not self.chain:
            raise ValueError("assistants need chain=true (the kd_pyramid baseline)")
        if any(a <= b for a, b in zip(assistants, assistants[1:])) or any(a <= self.width for a in assistants):
            raise ValueError(f"assistants must be decreasing widths, all above the student's {self.width:g}; "
                             f"got {list(assistants)}")
        object.__setattr__(self, "assistants", assistants)


def student_spec(ctx: Context, name: str, width: float) -> NetSpec:
    """The spec of zoo model or small VGG ``name`` at ``width`` for the env's data (classes, channels, size)."""
    data = ctx.distiller.data
    shape = {"num_classes": data.num_classes, "in_channels": data.in_channels, "input_size": data.image_size}
    if name == SMALL_VGG:
        return ddc_small_vgg(**shape, width=width)
    spec = get_model_spec(name, **shape)
    if width == 1.0:
        return spec
    return apply_decisions(spec, uniform_choices(spec, width), channel_round=ctx.task.channel_round,
                           min_channels=ctx.task.min_channels)


def default_assistants(ctx: Context, name: str, width: float) -> tuple[float, ...]:
    """Assistant widths whose params lie geometrically between the student's and the teacher's, largest
    first; a ValueError when the teacher is not larger than the student."""
    spec = student_spec(ctx, name, width)
    student, teacher = spec.params, ctx.teacher_spec.params
    if teacher <= student:
        raise ValueError(f"the teacher ({teacher:,} params) is not larger than the student ({student:,}); "
                         f"a teacher-assistant chain needs explicit assistants")
    top = None if name == SMALL_VGG else 1.0
    widths, seen = [], {spec.hash()}
    for k in range(DEFAULT_ASSISTANTS, 0, -1):
        w = width * (teacher / student) ** (k / (2 * (DEFAULT_ASSISTANTS + 1)))
        w = w if top is None else min(w, top)
        spec = student_spec(ctx, name, w)
        if student < spec.params < teacher and spec.hash() not in seen:
            widths.append(w)
            seen.add(spec.hash())
    return tuple(widths)


def view_logits(ctx: Context, net: nn.Module) -> torch.Tensor:
    """(views, N, K) float32 logits of ``net`` on the evaluator's cached augmented training views."""
    images, _ = ctx.distiller.teacher_views()
    return torch.stack([ctx.distiller.logits(net, view) for view in images])


def _init(ctx: Context, spec: NetSpec, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return ctx.precision.prepare(build(spec).to(ctx.device))


def run(ctx: Context, *, student: str, width: float, epochs: int | None, lr: float | None, chain: bool,
        assistants: tuple[float, ...]) -> None:
    """Distil the student (through the assistants, largest first, when ``chain``) and save it."""
    seed = torch.initial_seed()  # the run's seed (run_baseline seeds torch just before)
    if chain and not assistants:
        assistants = default_assistants(ctx, student, width)
    teacher_logits, teacher_label = None, "teacher"
    for i, w in enumerate(assistants, start=1):
        start = time.perf_counter()
        spec = student_spec(ctx, student, w)
        net = _init(ctx, spec, seed)
        ctx.distiller.distill(net, epochs, lr, teacher_logits=teacher_logits)
        label = f"assistant {i}: {student} x{w:.3g}"
        ctx.log(label, ctx.measure(net, spec=spec, role="assistant", width=w, distilled_from=teacher_label),
                time.perf_counter() - start)
        teacher_logits, teacher_label = view_logits(ctx, net), label
    spec = student_spec(ctx, student, width)
    net = _init(ctx, spec, seed)
    ctx.distiller.distill(net, epochs, lr, teacher_logits=teacher_logits)
    ctx.result(f"{student} x{width:g}", net, ctx.measure(net, spec=spec, role="student", width=width,
                                                           distilled_from=teacher_label),
               spec=spec, student=student, width=width, assistants=list(assistants))
