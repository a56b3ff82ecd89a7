"""Uniform width multiplier: every unit keeps the same fraction of its teacher's channels (no removals),
inherits the teacher's largest-L1 filters and is KD fine-tuned. The simplest reference for any search."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ddc_env.arch import uniform_choices

from .common import Context


@dataclass(frozen=True)
class Kwargs:
    """``widths``: the multipliers to run; ``epochs``: KD fine-tuning epochs per student (None = the
    fidelity's, i.e. exactly what the env's reward sees)."""

    widths: tuple[float, ...] = (0.25, 0.5, 0.75)
    epochs: int | None = None

    def __post_init__(self) -> None:
        widths = tuple(float(w) for w in self.widths)
        if not widths or not all(0.0 < w <= 1.0 for w in widths):
            raise ValueError(f"widths must be a non-empty list of numbers in (0, 1], got {self.widths!r}")
        object.__setattr__(self, "widths", widths)
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 0):
            raise ValueError(f"epochs must be None or an integer >= 0, got {self.epochs!r}")


def run(ctx: Context, *, widths: tuple[float, ...], epochs: int | None) -> None:
    for width in ctx.bar(widths, "widths"):
        start = time.perf_counter()
        spec = ctx.task.student_spec(uniform_choices(ctx.teacher_spec, width))
        net = ctx.distiller.init_student(spec)
        ctx.finetune(net, epochs)
        ctx.result(f"uniform {width:g}", net, ctx.measure(net, spec=spec), spec=spec,
                   seconds=time.perf_counter() - start, width=width)
