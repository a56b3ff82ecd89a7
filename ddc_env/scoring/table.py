"""The tabular scorer: a student's record is the one the live scorer made when the benchmark table was built."""
from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from ..arch import NetSpec
from ..latency import LatencyModel
from ..tables import BenchTable, TableError
from .base import Scorer, make_record

__all__ = ["TRAIN_SEEDS", "TableBackedScorer", "TableScorer"]

TRAIN_SEEDS = ("random", "mean")  # besides a seed of the table
_STUDENT_FIELDS = ("val_acc", "params", "flops", "size_bytes", "latency_ms", "train_seconds",
                   "train_images_per_second", "final_loss")


class TableBackedScorer(Scorer):
    """What the twins' scorers share: a benchmark table, one of its fidelities (default: the table's), the
    teacher's record the table holds for it, and the table's latency as the time term: the rows' own unit table, or
    another CPU's (``device``, one of ``table.latency_devices``), which then times teacher and students alike."""

    def __init__(self, table: BenchTable, fidelity: str | None = None, device: str | None = None) -> None:
        self.table, self.task = table, table.task
        self.fidelity = table.check_fidelity(fidelity or table.default_fidelity)
        self.device = None if device == "build" else device
        self._device_latency = table.latency_model(device) if self.device else None
        self._teacher = table.teacher_record(self.fidelity)
        if self._device_latency is not None:
            self._teacher["latency_ms"] = self._device_latency.predict_ms(table.task.teacher_spec)

    def device_time(self, spec: NetSpec, build_ms: float) -> float:
        """The student's time on the chosen device (``build_ms``: on the rows' own)."""
        return build_ms if self._device_latency is None else self._device_latency.predict_ms(spec)

    @property
    def time_term(self) -> str:
        return "latency"

    def teacher_record(self) -> dict[str, Any]:
        return dict(self._teacher)

    def latency_model(self) -> LatencyModel:
        return self.table.latency_model(self.device)



class TableScorer(TableBackedScorer):
    """Looks students up in ``table`` at ``fidelity`` (default: the table's). ``train_seed`` picks the row of a
    student's training seeds: one of the table's seeds (default: its first, the live env's default), ``"random"``
    (one seed drawn per student from :attr:`rng`, NATS-Bench's ``is_random``) or ``"mean"`` (accuracies and times
    averaged over seeds). A student outside the table raises :class:`~ddc_env.tables.TableError`."""

    def __init__(self, table: BenchTable, fidelity: str | None = None, *, train_seed: int | str | None = None,
                 rng: np.random.Generator | None = None, device: str | None = None) -> None:
        super().__init__(table, fidelity, device)
        seeds = table.seeds(self.fidelity)
        train_seed = seeds[0] if train_seed is None else train_seed
        if train_seed not in (*seeds, *TRAIN_SEEDS) or isinstance(train_seed, bool):
            raise TableError(f"train_seed must be one of the table's seeds at {self.fidelity!r} {seeds} or one of "
                             f"{list(TRAIN_SEEDS)}, got {train_seed!r}")
        self.train_seed = train_seed
        self.rng = rng if rng is not None else np.random.default_rng(0)

    @property
    def key(self) -> str:
        return f"table:{self.table.name}:{self.fidelity}:{self.train_seed}" + (f":{self.device}" if self.device else "")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "table": self.table.name, "train_seed": self.train_seed,
                "latency_model": self.table.latency["describe"]}

    def evaluate(self, spec: NetSpec) -> dict[str, Any]:
        rows = self.table.rows_for(spec.hash(), self.fidelity)
        if not rows:
            raise TableError(f"student {spec.hash()} is not in table {self.table.name!r} at {self.fidelity!r}; this "
                             f"twin covers the {len(self.table.spec_hashes(self.fidelity))} students of its table")
        if self.train_seed == "mean":
            row = {**rows[0], **{k: statistics.fmean(r[k] for r in rows)
                                 for k in (*_STUDENT_FIELDS, "eval_seconds") if rows[0][k] is not None}}
            row["status"] = "ok" if all(r["status"] == "ok" for r in rows) else rows[0]["status"]
        elif self.train_seed == "random":
            row = rows[int(self.rng.integers(len(rows)))]
        else:
            row = next(r for r in rows if r["seed"] == self.train_seed)
        reason = "" if row["status"] == "ok" else f"training diverged when the table was built (seed {row['seed']})"
        student = {k: row[k] for k in _STUDENT_FIELDS}
        student["latency_ms"] = self.device_time(spec, row["latency_ms"])
        seed = -1 if self.train_seed == "mean" else row["seed"]  # which training seed the record is (-1: their mean)
        record = make_record(self._teacher, {**student, "train_seed": seed}, spec, row["status"], reason,
                             fidelity=self.fidelity)
        record["eval_seconds"] = row["eval_seconds"]
        return record
