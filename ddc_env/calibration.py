"""Calibrating a :class:`~ddc_env.rewards.CalibratedReward` to a task: score its uniform-width reference students
once and keep the result, so every process (vector-env workers, resumed searches) rewards with the same numbers.

A live scorer's calibration is stored in ``$DDC_HOME/calibration/<task>-<scorer, options>.json`` (computed by the
first process under a file lock, read by the others); a benchmark twin's comes from its table's rows of the same
students, which are what the live env measures, so a twin and its live env share one calibration.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .arch import uniform_choices
from .paths import atomic_write_text, ddc_home
from .rewards import BudgetReward, CalibratedReward, DDCReward, RewardFn
from .scoring import Scorer
from .task import Task

__all__ = ["calibrate", "calibrated", "reference_widths"]


def reference_widths(recipe: CalibratedReward, task: Task) -> dict[str, float]:
    """The widths the env offers nearest to the recipe's floor, target and wide widths."""
    offered = [w for w in task.width_choices if w < 1.0] or [1.0]
    wanted = {"floor": recipe.floor_width, "target": recipe.target_width, "wide": recipe.wide_width}
    return {role: min(offered, key=lambda w: (abs(w - want), w)) for role, want in wanted.items()}


def _reference_records(recipe: CalibratedReward, scorer: Scorer) -> dict[str, dict[str, Any]]:
    task = scorer.task
    specs = {role: task.student_spec(uniform_choices(task.teacher_spec, w))
             for role, w in reference_widths(recipe, task).items()}
    table = getattr(getattr(scorer, "inner", scorer), "table", None)
    if table is not None:  # a twin: the table's rows (first training seed), as the live env measured them
        from .scoring.table import TableScorer

        exact = TableScorer(table, scorer.fidelity)
        return {role: exact.evaluate(spec) for role, spec in specs.items()}
    records = dict(zip(specs, scorer.score_many(list(specs.values()))))
    bad = {role: r.get("reason") or r["status"] for role, r in records.items() if r["status"] != "ok"}
    if bad:
        raise RuntimeError(f"cannot calibrate the reward: the uniform reference students failed ({bad})")
    return records


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def calibrate(recipe: CalibratedReward, scorer: Scorer) -> DDCReward:
    """The DDC reward ``recipe`` gives on ``scorer``'s task (see the module docstring for where it is kept)."""
    scorer.prepare()  # the task's identity (its key) is known once its teacher and data are loaded
    if getattr(getattr(scorer, "inner", scorer), "table", None) is not None:
        return recipe.fit(_reference_records(recipe, scorer))
    options = json.dumps({"scorer": scorer.key, "recipe": recipe.__dict__}, sort_keys=True, default=str)
    name = f"{scorer.task.key()}-{hashlib.sha256(options.encode()).hexdigest()[:16]}.json"
    path = ddc_home() / "calibration" / name
    with _locked(path):
        if not path.is_file():
            records = _reference_records(recipe, scorer)
            fitted = recipe.fit(records)
            atomic_write_text(path, json.dumps({
                "task": scorer.task.name, "scorer": scorer.key, "recipe": recipe.__dict__,
                "widths": reference_widths(recipe, scorer.task),
                "reference": {role: {k: r[k] for k in ("val_acc", "acc_ratio", "latency_ratio", "flop_ratio",
                                                       "param_ratio", "spec_hash")} for role, r in records.items()},
                "reward": fitted.__dict__}, indent=1))
        stored = json.loads(path.read_text())["reward"]
    return DDCReward(**stored)


def calibrated(reward: RewardFn, scorer: Scorer) -> RewardFn:
    """``reward`` with any calibrated recipe in it (itself, or a budget reward's base) fitted to ``scorer``'s task;
    other rewards as they are."""
    if isinstance(reward, CalibratedReward):
        return calibrate(reward, scorer)
    if isinstance(reward, BudgetReward) and isinstance(reward.base, CalibratedReward):
        reward.base = calibrate(reward.base, scorer)
    return reward
