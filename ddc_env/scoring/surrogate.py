"""The surrogate scorer: a model fit on a benchmark table predicts the validation accuracy (and the evaluation's
cost) of any student of the task's action space; params and FLOPs are exact from the IR, time comes from the
table's latency table, size from a linear fit on the table (params, BatchNorm buffers, tensors)."""
from __future__ import annotations

import functools
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from scipy.stats import kendalltau

from ..arch import NetSpec, Unit, channel_counts
from ..paths import atomic_write_bytes, ddc_home
from ..tables import BenchTable, TableError
from ..task import Task
from .base import make_record
from .table import TableBackedScorer

__all__ = ["SurrogateModel", "SurrogateQuality", "SurrogateScorer", "features", "fit_surrogate"]


def features(task: Task, spec: NetSpec, latency_ms: float, teacher_latency_ms: float) -> list[float]:
    """What the surrogate reads about a student: the width each decision kept (its channel space's count over the
    teacher's; 0 = removed), the log params, FLOPs and latency ratios, and how many units were removed."""
    counts = channel_counts(spec)
    widths = [counts.get(d.space, 0) / d.channels if d.space else float(d.unit in spec.names)
              for d in task.decisions]
    teacher = task.teacher_spec
    return [*widths, math.log(spec.params / teacher.params), math.log(spec.flops / teacher.flops),
            math.log(latency_ms / teacher_latency_ms), float(len(teacher.units) - len(spec.units))]


def size_features(spec: NetSpec) -> list[float]:
    """What a saved state dict's size is linear in: its floats (params plus BatchNorm running statistics), the
    number of tensors, and 1."""
    floats = tensors = 0
    for row in spec.shapes():
        unit_floats, unit_tensors = _state_size(row.unit, row.inp[0])
        floats, tensors = floats + unit_floats, tensors + unit_tensors
    return [float(floats), float(tensors), 1.0]


@functools.lru_cache(maxsize=4096)
def _state_size(unit: Unit, c_in: int) -> tuple[int, int]:
    """(floating-point values, tensors) of one unit's state dict, read off its module built on the meta device."""
    with torch.device("meta"):
        state = unit.module(c_in).state_dict()
    return sum(t.numel() for t in state.values() if t.is_floating_point()), len(state)


@dataclass(frozen=True)
class SurrogateQuality:
    """How well the surrogate predicts validation accuracy on table rows it was not fit on (k-fold)."""

    kendall_tau: float
    mae: float
    folds: int
    rows: int


@dataclass
class SurrogateModel:
    """The fitted models of one table fidelity: accuracy, evaluation seconds, state-dict size."""

    accuracy: Any
    seconds: Any
    size_coef: np.ndarray
    quality: SurrogateQuality


def _regressor(seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=400, learning_rate=0.03, max_depth=3, subsample=0.8,
                                     random_state=seed)


def _table_features(table: BenchTable, fidelity: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    teacher_latency = table.teacher_record(fidelity)["latency_ms"]
    rows = [r for r in table.rows if r["fidelity"] == fidelity and r["status"] == "ok"]
    x = np.array([features(table.task, table.spec(r["spec_hash"]), r["latency_ms"], teacher_latency) for r in rows])
    return x, rows


def cross_validate(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> SurrogateQuality:
    """Kendall tau and mean absolute error of out-of-fold predictions."""
    from sklearn.model_selection import KFold

    pred = np.zeros_like(y)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(x):
        pred[test] = _regressor(seed).fit(x[train], y[train]).predict(x[test])
    return SurrogateQuality(float(kendalltau(pred, y).statistic), float(np.abs(pred - y).mean()), folds, len(y))


_FITTED: dict[tuple[str, str, int], SurrogateModel] = {}


def fit_surrogate(table: BenchTable | str, fidelity: str, seed: int = 0) -> SurrogateModel:
    """The surrogate of a table (or a table's name or path) at ``fidelity``: fit on every valid row (mean over
    training seeds), with its out-of-fold quality; deterministic for a seed. Fitted once per machine: the model is
    kept in ``$DDC_HOME/surrogates`` under the table's digest and the scikit-learn version (and in memory)."""
    table = table if isinstance(table, BenchTable) else BenchTable.load(table)
    key = (table.digest, fidelity, seed)
    if key not in _FITTED:
        path = (ddc_home() / "surrogates" /
                f"{table.name}-{table.digest}-{fidelity}-seed{seed}-sklearn{sklearn.__version__}.pkl")
        model = _read_model(path)
        if model is None:
            model = _fit(table, fidelity, seed)
            atomic_write_bytes(path, pickle.dumps(model))
        _FITTED[key] = model
    return _FITTED[key]


def _read_model(path: Path) -> SurrogateModel | None:
    """A model this package pickled into its own cache (None when missing or unreadable: it is fit again)."""
    try:
        model = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return model if isinstance(model, SurrogateModel) else None


def _fit(table: BenchTable, fidelity: str, seed: int) -> SurrogateModel:
    x, rows = _table_features(table, fidelity)
    if len(rows) < 20:
        raise TableError(f"table {table.name!r} has {len(rows)} valid rows at {fidelity!r}: too few for a surrogate")
    by_student: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_student.setdefault(r["spec_hash"], []).append(i)
    first = [idx[0] for idx in by_student.values()]
    xs = x[first]
    acc = np.array([np.mean([rows[i]["val_acc"] for i in idx]) for idx in by_student.values()])
    secs = np.log([np.mean([rows[i]["eval_seconds"] for i in idx]) for idx in by_student.values()])
    sizes = np.array([rows[i]["size_bytes"] for i in first], dtype=float)
    size_x = np.array([size_features(table.spec(rows[i]["spec_hash"])) for i in first])
    size_coef = np.linalg.lstsq(size_x, sizes, rcond=None)[0]
    return SurrogateModel(_regressor(seed).fit(xs, acc), _regressor(seed).fit(xs, secs), size_coef,
                          cross_validate(xs, acc, seed=seed))


class SurrogateScorer(TableBackedScorer):
    """Predicts records of any student of a table's task at ``fidelity`` (default: the table's) from the table's
    surrogate (see the module docstring). Predictions are deterministic; every student is "ok"."""

    def __init__(self, table: BenchTable, fidelity: str | None = None, device: str | None = None) -> None:
        super().__init__(table, fidelity, device)
        self.model = fit_surrogate(table, self.fidelity)
        self.latency = table.latency_model()  # the rows' own: what the model was fit on

    @property
    def key(self) -> str:
        return f"surrogate:{self.table.name}:{self.fidelity}" + (f":{self.device}" if self.device else "")

    @property
    def quality(self) -> SurrogateQuality:
        """Held-out quality of the accuracy model."""
        return self.model.quality

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "table": self.table.name, "quality": self.model.quality.__dict__}

    def evaluate(self, spec: NetSpec) -> dict[str, Any]:
        return self.evaluate_many([spec])[0]

    def evaluate_many(self, specs: Sequence[NetSpec]) -> list[dict[str, Any]]:
        """Records of several students with one model call (faster than one by one)."""
        latency = [self.latency.predict_ms(s) for s in specs]
        teacher_ms = self.table.teacher_record(self.fidelity)["latency_ms"]  # the rows' own, as the model was fit
        x = np.array([features(self.task, s, t, teacher_ms) for s, t in zip(specs, latency)])
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):  # x is ours: no checks
            acc = np.clip(self.model.accuracy.predict(x), 0.0, 1.0)
            secs = np.exp(self.model.seconds.predict(x))
        out = []
        for spec, t, a, sec in zip(specs, latency, acc, secs):
            size = float(np.dot(size_features(spec), self.model.size_coef))
            student = {"val_acc": float(a), "params": spec.params, "flops": spec.flops, "size_bytes": round(size),
                       "latency_ms": self.device_time(spec, t), "train_seconds": 0.0, "train_images_per_second": 0.0, "final_loss": 0.0}
            record = make_record(self._teacher, student, spec, "ok", fidelity=self.fidelity)
            record["eval_seconds"] = float(sec)
            out.append(record)
        return out
