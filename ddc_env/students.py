"""Which students of a task's action space a benchmark table holds: all of them, masked random ones, a fixed sample
(the teacher, uniform widths, structured corners, then random), or the few that cover every unit a latency table must
time."""
from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

from .arch import REMOVE, NetSpec, uniform_choices
from .latency import unit_key
from .task import Task
from .validate import check_int

__all__ = ["all_students", "covering_specs", "random_students", "sample_students", "students_for"]


def all_students(task: Task) -> list[tuple[dict[str, float], NetSpec]]:
    """Every distinct student of the task's action space (all allowed action combinations, deduplicated by spec
    hash, first combination kept), as (choices, spec)."""
    options = [[a for a, ok in enumerate(task.allowed(d)) if ok] for d in task.decisions]
    out: dict[str, tuple[dict[str, float], NetSpec]] = {}
    for combo in itertools.product(*options):
        choices = {d.name: task.action_choices[a] for d, a in zip(task.decisions, combo)}
        spec = task.student_spec(choices)
        out.setdefault(spec.hash(), (choices, spec))
    return list(out.values())


def random_students(task: Task, seed: int = 0, patience: int = 10_000) -> Iterator[tuple[dict[str, Any], NetSpec]]:
    """Masked random students (every decision drawn uniformly from the actions it allows) drawn with ``seed``, each
    once; it stops after ``patience`` draws in a row give no new student (a small space is exhausted)."""
    rng = random.Random(seed)
    options = [[a for a, ok in enumerate(task.allowed(d)) if ok] for d in task.decisions]
    seen: set[str] = set()
    misses = 0
    while misses < patience:
        choices = {d.name: task.action_choices[rng.choice(opts)] for d, opts in zip(task.decisions, options)}
        spec = task.student_spec(choices)
        if spec.hash() in seen:
            misses += 1
            continue
        misses = 0
        seen.add(spec.hash())
        yield choices, spec


def covering_specs(task: Task, patience: int = 3000, seed: int = 0) -> list[NetSpec]:
    """Students whose units cover every unit (with its input shape) the action space can produce: the teacher, then
    masked random students until ``patience`` of them in a row bring no new unit. A table's latency entries cover
    these, so a surrogate can time any student of the space."""

    keys: set[str] = set()
    out = [task.teacher_spec]
    quiet = 0
    for _, spec in random_students(task, seed):
        new = {unit_key(r.unit, r.inp) for r in spec.shapes()} - keys
        if new:
            keys |= new
            out.append(spec)
            quiet = 0
        else:
            quiet += 1
            if quiet >= patience:
                break
    return out


def sample_students(task: Task, n: int, seed: int = 0) -> list[tuple[dict[str, Any], NetSpec]]:
    """``n`` distinct students in a fixed order: the teacher and the uniform widths, structured corners (every
    removal, the narrowest widths, thin early or late halves, each with and without removals), then masked random
    choices drawn with ``seed``. A shorter list is a prefix of a longer one (same task and seed)."""
    check_int(n, "n", minimum=1)
    widths = [w for w in task.width_choices if w < 1.0]
    names = {d.name for d in task.decisions}
    removable = [d.name for d in task.decisions if d.removable]
    shrinkable = [d.name for d in task.decisions if d.shrinkable]
    narrow = widths[0] if widths else 1.0
    half = len(shrinkable) // 2
    every_removal = {name: REMOVE for name in removable}
    structured: list[dict[str, Any]] = [{}, *(uniform_choices(task.teacher_spec, w) for w in widths), every_removal]
    for group in (shrinkable, shrinkable[:half], shrinkable[half:]):
        thin = {name: narrow for name in group}
        structured += [thin, {**thin, **every_removal}]
    out: dict[str, tuple[dict[str, Any], NetSpec]] = {}
    for choices in structured:
        choices = {k: v for k, v in choices.items() if k in names}
        spec = task.student_spec(choices)
        out.setdefault(spec.hash(), (choices, spec))
    for choices, spec in random_students(task, seed):
        if len(out) >= n:
            break
        out.setdefault(spec.hash(), (choices, spec))
    return list(out.values())[:n]


def students_for(task: Task, spec: str, seed: int = 0) -> list[tuple[dict[str, Any], NetSpec]]:
    """Students by a selection name: ``"all"`` (the whole action space) or an integer count (sampled)."""
    if spec == "all":
        return all_students(task)
    try:
        n = int(spec)
    except ValueError:
        raise ValueError(f"students must be 'all' or a count, got {spec!r}") from None
    return sample_students(task, n, seed)
