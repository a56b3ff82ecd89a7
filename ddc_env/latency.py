"""Reproducible inference time: a per-unit latency table, and paired direct measurement.

Timing a whole network once per process does not reproduce: on a shared 2-core machine the same LeNet-5 took
3.3 ms in one process and 8.6 ms in the next, so a reward built on it changed 50x between runs. Two ways out:

- :class:`LatencyModel` (the env's default, ``latency="model"``): every distinct unit (a conv with its input
  shape, a residual block, a pooling layer...) is timed once with a fixed protocol (fixed threads, warm-up,
  fastest of the timed rounds: other work on the machine only ever adds time) and cached on disk per device
  signature, thread count and batch size; a network's latency is the sum of its units' times, in the spirit of
  HW-NAS-Bench's and Once-for-All's lookup tables. The cache is an SQLite file where the first measurement of a
  unit wins, so every process on the machine reads the same number for the same unit and the same student always
  gets the same time. Since a unit is timed once for good, its rounds are many and short (120 of about 0.5 ms):
  on a machine busy with training, a 4 ms round is almost always cut by the scheduler, a 0.5 ms one often is not,
  so the fastest round still finds the unit's idle time (``bench/latency_load.py``). Short rounds do not escape
  the machine's slow phases, though: on a shared 2-core VM whole seconds run 1.3-1.9x slower, and a unit first timed
  in one kept that time (a VGG-16 table once read every unit of a student 1.4x slow). So a unit's rounds are guarded
  by a reference conv timed just before and after them; when either reading is more than ``guard`` above the
  fastest reference reading known to the cache, the attempt is repeated after a pause, up to ``unit_attempts``
  times, and the fastest attempt is kept (``bench/latency_repro.py``).
- :func:`measure_paired`: the student and its teacher timed in interleaved rounds in one window, so a slow
  moment of the machine slows both; the median and spread of each are kept.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import sqlite3
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .arch.build import unit_module
from .arch.spec import Conv, NetSpec, Unit
from .paths import ddc_home
from .train import device_signature, torch_threads

__all__ = ["GUARD_REFERENCE", "GUARD_ROUNDS", "PROTOCOL_VERSION", "LatencyModel", "LatencyProtocol", "PairedLatency",
           "device_signature", "fastest_unit_ms", "measure_module", "measure_paired", "timing_copy", "unit_key"]

PROTOCOL_VERSION = 4  # 4: guarded unit rounds; 3: many short unit rounds; 2: a unit's fastest round; 1: the median
_ROUND_SECONDS = 0.004  # a timed round of a network repeats the call until it lasts about this long
# the guard's reference: a mid-sized conv (64 -> 64 channels, 3x3, on one 8x8 map, whatever the protocol's batch), its
# readings' rounds, the readings a fresh cache starts its fastest known reading with, how long a reading stands for
# "just before" the next unit, and the pause before a unit's next attempt (times the attempt's number)
GUARD_REFERENCE = (Conv("reference", 64), (64, 8, 8))
GUARD_ROUNDS = 20
_REFERENCE_SEED_READINGS = 2
_READING_FRESH_SECONDS = 0.5
_RETRY_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class LatencyProtocol:
    """How one unit (or one network, in :func:`measure_paired`) is timed: ``threads`` intra-op threads, a batch of
    ``batch_size``, ``warmup`` untimed calls, then ``rounds`` timed rounds of calls (about 4 ms each) whose per-call
    mean is taken; a network's time is the median over rounds and its spread their interquartile range. A unit of
    the :class:`LatencyModel` gets ``unit_rounds`` rounds of about ``unit_round_ms`` each and keeps the fastest, in
    up to ``unit_attempts`` attempts: one whose reference readings are within ``guard`` (relative) of the reference's
    fastest known time ends the measurement."""

    device: str = "cpu"
    threads: int = 1
    batch_size: int = 1
    warmup: int = 10
    rounds: int = 15
    unit_rounds: int = 120
    unit_round_ms: float = 0.5
    unit_attempts: int = 3
    guard: float = 0.2

    def __post_init__(self) -> None:
        for name in ("threads", "batch_size", "rounds", "unit_rounds", "unit_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"latency {name} must be a positive integer, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"latency warmup must be an integer >= 0, got {self.warmup!r}")
        if isinstance(self.unit_round_ms, bool) or not isinstance(self.unit_round_ms, (int, float)) or \
                not 0.0 < self.unit_round_ms < math.inf:
            raise ValueError(f"latency unit_round_ms must be a positive number, got {self.unit_round_ms!r}")
        if isinstance(self.guard, bool) or not isinstance(self.guard, (int, float)) or not 0.0 < self.guard < math.inf:
            raise ValueError(f"latency guard must be a positive number, got {self.guard!r}")
        if torch.device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"latency device must be 'cpu' or 'cuda[:N]', got {self.device!r}")


def unit_key(unit: Unit, input_shape: tuple[int, ...]) -> str:
    """The cache key of a unit on a per-sample input shape: its type and fields without its name."""
    fields = {k: v for k, v in unit.to_dict().items() if k != "name"}
    return json.dumps({**fields, "input": list(input_shape)}, sort_keys=True, separators=(",", ":"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _calls_per_round(module: nn.Module, x: torch.Tensor, device: torch.device, seconds: float) -> int:
    """How many calls make a round of about ``seconds`` (at least 1)."""
    _sync(device)
    start = time.perf_counter()
    module(x)
    _sync(device)
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(1000, round(seconds / once)))


def _round_ms(module: nn.Module, x: torch.Tensor, calls: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        module(x)
    _sync(device)
    return (time.perf_counter() - start) / calls * 1e3


def _example(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)  # never the global RNG
    return torch.randn(shape, generator=generator).to(device)


def _time_modules(modules: list[nn.Module], x: torch.Tensor, protocol: LatencyProtocol, rounds: int,
                  round_seconds: float = _ROUND_SECONDS, warm_calls: int = 0) -> list[list[float]]:
    """Per-round per-call milliseconds of each module, the modules interleaved round by round (each round after
    ``warm_calls`` untimed calls of its module)."""
    device = torch.device(protocol.device)
    with torch_threads(protocol.threads), torch.inference_mode():
        for m in modules:
            for _ in range(protocol.warmup):
                m(x)
        calls = [_calls_per_round(m, x, device, round_seconds) for m in modules]
        times: list[list[float]] = [[] for _ in modules]
        for _ in range(rounds):
            for i, m in enumerate(modules):
                for _ in range(warm_calls):
                    m(x)
                times[i].append(_round_ms(m, x, calls[i], device))
    return times


def _median_spread(times: list[float]) -> tuple[float, float]:
    if len(times) == 1:
        return times[0], 0.0
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return median, q3 - q1


def fastest_unit_ms(unit: Unit, input_shape: tuple[int, ...], protocol: LatencyProtocol, rounds: int,
                    batch_size: int | None = None) -> float:
    """The fastest of ``rounds`` short rounds (``protocol.unit_round_ms`` each) of ``unit``, randomly initialised, on
    a batch (default ``protocol.batch_size``) of per-sample ``input_shape``: how the latency model times a unit."""
    device = torch.device(protocol.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = unit_module(unit, input_shape[0]).to(device).eval()
    x = _example((batch_size or protocol.batch_size, *input_shape), device)
    return min(_time_modules([module], x, protocol, rounds, protocol.unit_round_ms / 1e3)[0])


class LatencyModel:
    """Latency of a network as the sum of its units' cached times (milliseconds per forward pass of a batch).

    ``path``: the SQLite cache (default ``$DDC_HOME/latency/units.sqlite``), shared by every process; a unit not
    in it is timed now with ``protocol`` and inserted unless another process inserted it first, and the stored
    value is what is used. ``entries`` (unit key -> ms) gives a fixed table instead (e.g. shipped with a
    benchmark table): nothing is measured and an unknown unit is an error.
    """

    def __init__(self, protocol: LatencyProtocol | None = None, *, path: str | os.PathLike[str] | None = None,
                 entries: Mapping[str, float] | None = None, device_name: str | None = None) -> None:
        self.protocol = protocol or LatencyProtocol()
        self.fixed = entries is not None
        self.device_name = device_name or (None if self.fixed else device_signature(self.protocol.device))
        self.path = None if self.fixed else Path(path) if path is not None else ddc_home() / "latency" / \
            "units.sqlite"
        self._memory: dict[str, float] = dict(entries or {})
        self.attempts: dict[str, int] = {}  # unit key -> guarded attempts its measurement took (in this process)
        self._local = threading.local()

    @property
    def signature(self) -> str:
        """Device, protocol and version: rows of the cache are only shared between equal signatures."""
        p = self.protocol
        return (f"{self.device_name} | threads {p.threads} | batch {p.batch_size} | warmup {p.warmup} | "
                f"unit rounds {p.unit_rounds} x {p.unit_round_ms:g} ms | "
                f"attempts {p.unit_attempts} guard {p.guard:g} | v{PROTOCOL_VERSION}")

    def describe(self) -> dict[str, Any]:
        """What the times mean, for records and table files."""
        return {"model": "unit lookup table", "device": self.device_name, **dataclasses.asdict(self.protocol),
                "protocol_version": PROTOCOL_VERSION}

    def key(self) -> str:
        """A short hash of :attr:`signature`: part of the cache key of every evaluation timed with this model."""
        return hashlib.sha256(self.signature.encode()).hexdigest()[:16]

    def predict_ms(self, spec: NetSpec) -> float:
        """The network's latency: the sum over its units of their cached times."""
        return float(sum(self.unit_ms(row.unit, row.inp) for row in spec.shapes()))

    def unit_ms(self, unit: Unit, input_shape: tuple[int, ...]) -> float:
        """One unit's time on a per-sample ``input_shape`` (measured and cached on first use)."""
        key = unit_key(unit, input_shape)
        if key in self._memory:
            return self._memory[key]
        if self.fixed:
            raise KeyError(f"no latency entry for unit {key} in this fixed latency table")
        value = self._lookup(key)
        if value is None:
            value = self._measure(unit, input_shape)
            value = self._insert(key, value)
        self._memory[key] = value
        return value

    def entries(self, specs: list[NetSpec]) -> dict[str, float]:
        """Unit key -> ms for every unit of ``specs`` (measuring what is missing): a fixed table to ship."""
        out = {}
        for spec in specs:
            for row in spec.shapes():
                out[unit_key(row.unit, row.inp)] = self.unit_ms(row.unit, row.inp)
        return out

    # -- measurement and cache ---------------------------------------------------------------------------
    def _reference_ms(self, reuse: bool = False) -> float:
        """One reading of the reference conv, which also lowers the cache's fastest known reading if it beats it
        (``reuse``: the last reading instead, if it is only a moment old)."""
        last = getattr(self._local, "reading", None)
        if reuse and last is not None and time.monotonic() - last[0] < _READING_FRESH_SECONDS:
            return last[1]
        ms = fastest_unit_ms(*GUARD_REFERENCE, self.protocol, GUARD_ROUNDS, batch_size=1)
        self._connection().execute("INSERT INTO reference VALUES (?, ?) ON CONFLICT(signature) DO UPDATE SET "
                                   "ms = min(ms, excluded.ms)", (self.signature, ms))
        self._local.reading = (time.monotonic(), ms)
        return ms

    def _reference_floor(self) -> float:
        """The fastest reference reading known to the cache (a fresh cache starts with a few readings)."""
        if self._connection().execute("SELECT 1 FROM reference WHERE signature = ?", (self.signature,)).fetchone() \
                is None:
            for _ in range(_REFERENCE_SEED_READINGS):
                self._reference_ms()
        row = self._connection().execute("SELECT ms FROM reference WHERE signature = ?", (self.signature,)).fetchone()
        return float(row[0])

    def _measure(self, unit: Unit, input_shape: tuple[int, ...]) -> float:
        """The unit's fastest round over guarded attempts (see the module docstring); ``self.attempts[key]`` says how
        many it took."""
        p, floor, best = self.protocol, self._reference_floor(), math.inf
        for attempt in range(1, p.unit_attempts + 1):
            before = self._reference_ms(reuse=attempt == 1)  # the previous unit's last reading, when just taken
            best = min(best, fastest_unit_ms(unit, input_shape, p, p.unit_rounds))
            after = self._reference_ms()
            if max(before, after) <= floor * (1 + p.guard):
                break
            time.sleep(_RETRY_PAUSE_SECONDS * attempt)  # the machine's slow phases last about a second
        self.attempts[unit_key(unit, input_shape)] = attempt
        return best

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS units (signature TEXT NOT NULL, key TEXT NOT NULL, ms REAL NOT NULL, "
                     "created REAL NOT NULL, PRIMARY KEY (signature, key))")
        conn.execute("CREATE TABLE IF NOT EXISTS reference (signature TEXT PRIMARY KEY, ms REAL NOT NULL)")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _lookup(self, key: str) -> float | None:
        row = self._connection().execute("SELECT ms FROM units WHERE signature = ? AND key = ?",
                                         (self.signature, key)).fetchone()
        return None if row is None else float(row[0])

    def _insert(self, key: str, ms: float) -> float:
        conn = self._connection()
        conn.execute("INSERT OR IGNORE INTO units VALUES (?, ?, ?, ?)", (self.signature, key, ms, time.time()))
        stored = self._lookup(key)  # another process may have been first: its value is everyone's
        return ms if stored is None else stored

    def __getstate__(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "path": self.path, "fixed": self.fixed, "device_name": self.device_name,
                "memory": self._memory if self.fixed else {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.protocol, self.path, self.fixed = state["protocol"], state["path"], state["fixed"]
        self.device_name, self._memory = state["device_name"], dict(state["memory"])
        self.attempts = {}
        self._local = threading.local()


@dataclass(frozen=True)
class PairedLatency:
    """Medians and interquartile spreads (ms) of a student and its teacher timed in the same interleaved rounds."""

    student_ms: float
    student_spread_ms: float
    teacher_ms: float
    teacher_spread_ms: float
    rounds: int

    @property
    def ratio(self) -> float:
        return self.student_ms / self.teacher_ms


def timing_copy(net: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """A float32, contiguous-memory, eval-mode copy of ``net`` on ``device``: how every network and unit is timed
    (training may have left the module in bf16-friendly channels_last on another device)."""
    out = copy.deepcopy(net).to(torch.device(device), dtype=torch.float32, memory_format=torch.contiguous_format)
    return out.eval()


def measure_module(net: nn.Module, input_shape: tuple[int, ...],
                   protocol: LatencyProtocol | None = None) -> tuple[float, float]:
    """Median and interquartile spread (ms) of ``net``'s forward pass on a batch of per-sample ``input_shape``,
    timed with ``protocol`` (``net`` must be on the protocol's device; see :func:`timing_copy`)."""
    protocol = protocol or LatencyProtocol()
    x = _example((protocol.batch_size, *input_shape), torch.device(protocol.device))
    return _median_spread(_time_modules([net], x, protocol, protocol.rounds)[0])


def measure_interleaved(nets: Sequence[nn.Module], input_shape: tuple[int, ...],
                        protocol: LatencyProtocol | None = None, warm_calls: int = 0) -> list[tuple[float, float]]:
    """Median and interquartile spread (ms) of each of ``nets`` (per-sample ``input_shape``, all on the protocol's
    device, see :func:`timing_copy`), timed in the same interleaved rounds with ``protocol``: each round times every
    net in turn, so all of them see the same state of the machine and their ratios compare one moment. A round
    starts cold (whatever ran before left the caches); ``warm_calls`` untimed calls before each round time a net
    warm instead, as it runs when it serves requests one after another."""
    if isinstance(warm_calls, bool) or not isinstance(warm_calls, int) or warm_calls < 0:
        raise ValueError(f"warm_calls must be an integer >= 0, got {warm_calls!r}")
    protocol = protocol or LatencyProtocol()
    x = _example((protocol.batch_size, *input_shape), torch.device(protocol.device))
    return [_median_spread(times) for times in _time_modules(list(nets), x, protocol, protocol.rounds,
                                                             warm_calls=warm_calls)]


def measure_paired(student: nn.Module, teacher: nn.Module, input_shape: tuple[int, ...],
                   protocol: LatencyProtocol | None = None) -> PairedLatency:
    """Time ``student`` and ``teacher`` (per-sample ``input_shape``, both on the protocol's device, see
    :func:`timing_copy`) in interleaved rounds with ``protocol``: each round times the teacher, then the student,
    so both see the same state of the machine."""
    protocol = protocol or LatencyProtocol()
    (t_med, t_spread), (s_med, s_spread) = measure_interleaved([teacher, student], input_shape, protocol)
    if not (math.isfinite(t_med) and t_med > 0):
        raise RuntimeError(f"the teacher's measured latency is {t_med} ms")
    return PairedLatency(s_med, s_spread, t_med, t_spread, protocol.rounds)
