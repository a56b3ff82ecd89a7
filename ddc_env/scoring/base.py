"""The scoring seam: how a student spec of a task becomes the record an env rewards.

A :class:`Scorer` holds one :class:`~ddc_env.task.Task` and scores its student specs into metrics records (the env's
terminal ``info``): validation accuracy, params, FLOPs, size, latency, their ratios to the teacher's, and the seconds
the evaluation took. Backends: live KD training (:class:`~ddc_env.scoring.live.LiveScorer`), a caching wrapper over
the SQLite results store (:class:`~ddc_env.scoring.cached.CachedScorer`), a benchmark table
(:class:`~ddc_env.scoring.table.TableScorer`), a surrogate model (:class:`~ddc_env.scoring.surrogate.SurrogateScorer`)
and a pool of Ray actors (:class:`~ddc_env.scoring.ray.RayScorer`). The env knows nothing of how a record is made.

Scoring is synchronous (:meth:`Scorer.score`) or asynchronous (:meth:`Scorer.submit` returns a
``concurrent.futures.Future``; collect a batch with ``concurrent.futures.as_completed`` or :meth:`Scorer.score_many`).
Local backends compute at submission; parallel backends (:attr:`Scorer.concurrent`) return at once and finish out of
order.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from ..arch import NetSpec
from ..latency import LatencyModel
from ..rewards import ratios
from ..store import make_key
from ..task import Task

__all__ = ["TEACHER_FIELDS", "Scorer", "done_future", "make_record"]

TEACHER_FIELDS = ("val_acc", "params", "flops", "size_bytes", "latency_ms")


def make_record(teacher: Mapping[str, Any], student: Mapping[str, Any], spec: NetSpec | None, status: str,
                reason: str = "", *, fidelity: str) -> dict[str, Any]:
    """A metrics record: status, the teacher's values as ``teacher_*``, the student's values, its spec and (when
    ok) the student/teacher ratios."""
    record = {"status": status, "reason": reason, "fidelity": fidelity,
              **{f"teacher_{k}": teacher.get(k) for k in TEACHER_FIELDS}, **student}
    if spec is not None:
        record.update(spec=spec.to_dict(), spec_hash=spec.hash())
    if status == "ok":
        record.update(ratios(record))
    return record


def done_future(value: Any = None, error: BaseException | None = None) -> Future:
    """A future that is already finished with ``value`` (or ``error``)."""
    future: Future = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


class Scorer(abc.ABC):
    """Scores student specs of ``task`` at one fidelity with one time model (see the module docstring).

    Subclasses implement :meth:`evaluate` (compute one record, no cache), :meth:`teacher_record` and :attr:`key`;
    they may override :meth:`submit` to run evaluations in parallel.
    """

    task: Task
    fidelity: str  # the fidelity's name, as records carry it
    concurrent: bool = False  # whether submit() returns before the record is ready (a parallel backend)

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """What a record depends on besides the task and the spec (fidelity, time model): part of the cache key."""

    @property
    @abc.abstractmethod
    def time_term(self) -> str:
        """What the records' time is: "latency" (``latency_ms`` is set) or "flops" (latency is not measured)."""

    @abc.abstractmethod
    def teacher_record(self) -> dict[str, Any]:
        """The teacher's ``val_acc`` (on the task's class subset), ``params``, ``flops``, ``size_bytes`` and
        ``latency_ms`` (None when time is FLOPs)."""

    @abc.abstractmethod
    def evaluate(self, spec: NetSpec) -> dict[str, Any]:
        """Compute the record of ``spec`` now (no cache), with ``eval_seconds``."""

    def prepare(self) -> None:
        """Load what scoring needs (a live scorer of a light task: the teacher and the data); nothing by default."""

    def latency_model(self) -> LatencyModel | None:
        """The latency model whose times the records carry (None: times measured directly, or FLOPs)."""
        return None

    def describe(self) -> dict[str, Any]:
        """The backend, fidelity and time model, for run summaries."""
        return {"backend": type(self).__name__, "fidelity": self.fidelity, "time": self.time_term, "key": self.key}

    def record_key(self, spec: NetSpec) -> str:
        """The results-store key of ``spec``'s record: hash of (teacher, data, spec, :attr:`key`)."""
        self.prepare()  # the teacher's and the data's identities are known once they are loaded
        return make_key(self.task.teacher_id, self.task.data_key, spec.hash(), self.key)

    def submit(self, spec: NetSpec) -> Future:
        """Start scoring ``spec``; the future's result is the record (with ``cache_hit`` and
        ``simulated_seconds``; a backend that found the record elsewhere, e.g. another process's evaluation in
        flight, says ``cache_hit=True``). This base version scores now."""
        try:
            record = self.evaluate(spec)
        except Exception as e:  # delivered through the future, as a parallel backend would
            return done_future(error=e)
        return done_future({**record, "cache_hit": False, "simulated_seconds": record["eval_seconds"]})

    def score(self, spec: NetSpec) -> dict[str, Any]:
        """The record of ``spec`` (waits for it)."""
        return self.submit(spec).result()

    def score_many(self, specs: Sequence[NetSpec]) -> list[dict[str, Any]]:
        """The records of ``specs``, in order; all are submitted before any is awaited."""
        futures = [self.submit(spec) for spec in specs]
        return [f.result() for f in futures]

    def invalid_record(self, reason: str) -> dict[str, Any]:
        """The record of an action that gives no valid student (rewarded as a failure)."""
        record = make_record(self.teacher_record(), {"val_acc": 0.0}, None, "invalid", reason,
                             fidelity=self.fidelity)
        return {**record, "cache_hit": False, "eval_seconds": 0.0, "simulated_seconds": 0.0}

    def close(self) -> None:
        """Release what the scorer holds (connections, workers)."""

