"""A caching wrapper over any scorer: an in-memory cache, and optionally the SQLite results store, so a repeated
student costs nothing and a crash or a kill loses at most the evaluations in flight."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from ..arch import NetSpec
from ..latency import LatencyModel
from ..store import ResultsStore
from ..task import Task
from .base import Scorer, done_future

__all__ = ["CachedScorer"]


class CachedScorer(Scorer):
    """``inner`` behind a cache keyed by :meth:`Scorer.record_key` (teacher, data, spec, fidelity and time model).

    A record found in memory or in ``store`` comes back at once with ``cache_hit=True`` and ``simulated_seconds=0``;
    a student already in flight is not scored twice (the second request waits for the first and counts as a hit).
    A new record is written to ``store`` in one transaction as soon as it is finished, by whichever thread finishes
    it (the store gives each thread its own connection), tagged with ``run`` and ``method``. Invalid-action
    records are never stored, nor records the inner scorer reports as hits (another process, sharing the same
    parallel backend, evaluated the student and stores it). Pickles as its inner scorer, store and tags.
    """

    def __init__(self, inner: Scorer, store: ResultsStore | str | None = None, *, run: str | None = None,
                 method: str = "env") -> None:
        self.inner = inner
        self.fidelity = inner.fidelity
        self.store = ResultsStore(store) if isinstance(store, str) else store
        self.run, self.method = run, method
        self._memory: dict[str, dict[str, Any]] = {}
        self._in_flight: dict[str, Future] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "store": self.store, "run": self.run, "method": self.method}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["inner"], state["store"], run=state["run"], method=state["method"])

    @property
    def task(self) -> Task:  # the inner scorer's, which a light task's live scorer replaces once it is loaded
        return self.inner.task

    def prepare(self) -> None:
        self.inner.prepare()

    @property
    def key(self) -> str:
        return self.inner.key

    def latency_model(self) -> LatencyModel | None:
        return self.inner.latency_model()

    @property
    def concurrent(self) -> bool:  # type: ignore[override]
        return self.inner.concurrent

    @property
    def time_term(self) -> str:
        return self.inner.time_term

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "store": self.store.path if self.store is not None else None}

    def teacher_record(self) -> dict[str, Any]:
        return self.inner.teacher_record()

    def evaluate(self, spec: NetSpec) -> dict[str, Any]:
        return self.inner.evaluate(spec)

    def cached(self, spec: NetSpec) -> dict[str, Any] | None:
        """The stored record of ``spec`` (memory, then the store), or None."""
        return self._stored(self.record_key(spec))

    def _stored(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._memory.get(key)
        if record is None and self.store is not None:
            record = self.store.get(key)
            if record is not None:
                with self._lock:
                    self._memory[key] = record
        return record

    def submit(self, spec: NetSpec) -> Future:
        key = self.record_key(spec)
        record = self._stored(key)
        if record is None:
            with self._lock:  # checked again: another thread may have finished it meanwhile
                record = self._memory.get(key)
                if record is None:
                    pending = self._in_flight.get(key)
                    first = pending is None
                    if first:
                        pending = self._in_flight[key] = self.inner.submit(spec)
        if record is not None:
            return done_future(_hit(record))
        out: Future = Future()
        pending.add_done_callback(lambda f: self._deliver(key, spec, f, out, first))
        return out

    def _deliver(self, key: str, spec: NetSpec, done: Future, out: Future, first: bool) -> None:
        try:
            record = done.result()
        except BaseException as e:  # the caller sees the backend's error; nothing is stored
            with self._lock:
                self._in_flight.pop(key, None)
            out.set_exception(e)
            return
        shared = bool(record.get("cache_hit"))  # the backend found it elsewhere: its evaluator stores it
        record = {k: v for k, v in record.items() if k not in ("cache_hit", "simulated_seconds")}
        if first:
            try:
                if self.store is not None and not shared and record.get("status") != "invalid":
                    self.store.put(key, record, teacher=self.task.teacher_id, data=self.task.data_key,
                                   spec_hash=spec.hash(), fidelity=self.key, run=self.run, method=self.method,
                                   seconds=record.get("eval_seconds", 0.0))
            except BaseException as e:
                with self._lock:
                    self._in_flight.pop(key, None)
                out.set_exception(e)
                return
            with self._lock:
                self._memory[key] = record
                self._in_flight.pop(key, None)
        if first and not shared:
            out.set_result({**record, "cache_hit": False, "simulated_seconds": record.get("eval_seconds", 0.0)})
        else:
            out.set_result(_hit(record))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.inner.close()


def _hit(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "cache_hit": True, "simulated_seconds": 0.0}
