"""Uniform width multiplier: every unit keeps the same fraction of its teacher's channels (no removals),
inherits the teacher's largest-L1 filters and is KD fine-tuned. The simplest reference for any search."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ddc_env.arch import uniform_choices
from ddc_env.validate import check_int, check_numbers

from .common import Context


@dataclass(frozen=True)
class Kwargs:
    """``widths``: the multipliers to run; ``epochs``: KD fine-tuning epochs per student (None = the
    fidelity's, i.e. exactly what the env's reward sees)."""

    widths: tuple[float, ...] = (0.25, 0.5, 0.75)
    epochs: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", check_numbers(self.widths, "widths", minimum=0.0, maximum=1.0,
                                                         exclusive_minimum=True))
        check_int(self.epochs, "epochs", optional=True)


def run(ctx: Context, *, widths: tuple[float, ...], epochs: int | None) -> None:
    for width in ctx.bar(widths, "widths"):
        start = time.perf_counter()
        spec = ctx.task.student_spec(uniform_choices(ctx.teacher_spec, width))
        net = ctx.distiller.init_student(spec)
        ctx.finetune(net, epochs)
        ctx.result(f"uniform {width:g}", net, ctx.measure(net, spec=spec), spec=spec,
                   seconds=time.perf_counter() - start, width=width)
