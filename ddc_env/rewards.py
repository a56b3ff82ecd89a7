"""Named rewards over a metrics record: ``n2n``, ``ddc``, budget-constrained, and user callables.

A metrics record is a plain dict from the evaluator with at least ``status`` ("ok", "diverged"
or "invalid"), ``val_acc``, ``teacher_val_acc``, ``params``, ``teacher_params``, ``flops``,
``teacher_flops``, ``latency_ms``, ``teacher_latency_ms`` (None when latency is not measured),
``size_bytes`` and ``teacher_size_bytes``. Every reward returns -1.0 for a record whose status is
not "ok", the N2N paper's value for an invalid architecture. Rewards are module-level functions or
small classes, so they pickle into subprocess vector envs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "STATUSES",
    "BudgetReward",
    "DDCReward",
    "RewardFn",
    "ddc",
    "make_reward",
    "n2n",
    "ratios",
]

RewardFn = Callable[[Mapping[str, Any]], float]
STATUSES = ("ok", "diverged", "invalid")
_FAILED = -1.0
_RATIO_KEYS = MappingProxyType(
    {
        "acc_ratio": ("val_acc", "teacher_val_acc"),
        "param_ratio": ("params", "teacher_params"),
        "flop_ratio": ("flops", "teacher_flops"),
        "latency_ratio": ("latency_ms", "teacher_latency_ms"),
        "size_ratio": ("size_bytes", "teacher_size_bytes"),
    }
)
_BUDGET_LIMITS = MappingProxyType(
    {"param_ratio": "max_param_ratio", "flop_ratio": "max_flop_ratio", "latency_ratio": "max_latency_ratio"}
)


def ratios(record: Mapping[str, Any]) -> dict[str, float | None]:
    """Student/teacher ratios ``acc_ratio``, ``param_ratio``, ``flop_ratio``, ``latency_ratio``, ``size_ratio``.

    A ratio is None when either of its values is missing or None (e.g. unmeasured latency).
    A teacher value of zero raises ``ValueError``.
    """
    out: dict[str, float | None] = {}
    for name, (student_key, teacher_key) in _RATIO_KEYS.items():
        student, teacher = record.get(student_key), record.get(teacher_key)
        if student is None or teacher is None:
            out[name] = None
        elif teacher == 0:
            raise ValueError(f"record[{teacher_key!r}] is 0; cannot compute {name}")
        else:
            out[name] = float(student) / float(teacher)
    return out


def n2n(record: Mapping[str, Any]) -> float:
    """N2N reward ``(acc_s/acc_t) * C * (2 - C)`` with ``C = 1 - params_s/params_t``; -1 if status != "ok"."""
    if not _is_ok(record):
        return _FAILED
    r = ratios(record)
    compression = 1.0 - _required(r, "param_ratio")
    return _required(r, "acc_ratio") * compression * (2.0 - compression)


@dataclass(frozen=True)
class DDCReward:
    """DDC reward ``s(k(A/A_t - a)) * s(-k(T/T_t - t)) * s(-k(P/P_t - p))``, s the logistic function.

    ``a, t, p`` are ``acc_threshold, time_threshold, params_threshold`` and ``k`` is ``slope``.
    ``T/T_t`` is the measured latency ratio (``latency="measured"``) or the FLOP ratio
    (``latency="flops"``, deterministic). Returns -1.0 if status != "ok", so a failed student
    always scores below any valid one (whose reward lies in (0, 1)).
    """

    acc_threshold: float = 0.9
    time_threshold: float = 0.3
    params_threshold: float = 0.6
    slope: float = 15.0
    latency: Literal["measured", "flops"] = "measured"

    def __post_init__(self) -> None:
        for name in ("acc_threshold", "time_threshold", "params_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (isinstance(self.slope, (int, float)) and math.isfinite(self.slope) and self.slope > 0):
            raise ValueError(f"slope must be a positive finite number, got {self.slope!r}")
        if self.latency not in ("measured", "flops"):
            raise ValueError(f"latency must be 'measured' or 'flops', got {self.latency!r}")

    def __call__(self, record: Mapping[str, Any]) -> float:
        """Reward of one metrics record."""
        if not _is_ok(record):
            return _FAILED
        r = ratios(record)
        if self.latency == "measured" and r["latency_ratio"] is None:
            raise ValueError(
                "ddc reward with latency='measured' needs record['latency_ms'] and "
                "record['teacher_latency_ms']; measure latency or use latency='flops'"
            )
        time_ratio = _required(r, "latency_ratio" if self.latency == "measured" else "flop_ratio")
        k = self.slope
        return (
            _sigmoid(k * (_required(r, "acc_ratio") - self.acc_threshold))
            * _sigmoid(-k * (time_ratio - self.time_threshold))
            * _sigmoid(-k * (_required(r, "param_ratio") - self.params_threshold))
        )


def ddc(
    record: Mapping[str, Any],
    *,
    acc_threshold: float = 0.9,
    time_threshold: float = 0.3,
    params_threshold: float = 0.6,
    slope: float = 15.0,
    latency: Literal["measured", "flops"] = "measured",
) -> float:
    """DDC reward of ``record``; see :class:`DDCReward`. Status != "ok" gives -1.0."""
    reward = DDCReward(acc_threshold, time_threshold, params_threshold, slope, latency)
    return reward(record)


@dataclass
class BudgetReward:
    """Budget-constrained reward (N2N): the base reward within budget, a penalty outside it.

    A budget is any subset of ``max_param_ratio``, ``max_flop_ratio``, ``max_latency_ratio``
    (student/teacher, inclusive). A student within budget gets the base reward ``R``; a violator
    gets ``(eps - 1) + eps * R``; status != "ok" gives -1.0. ``eps`` falls linearly from ``eps0``
    to 0 over ``anneal_steps`` policy updates: call :meth:`step` once per update, or
    :meth:`set_progress` to jump to an update count (e.g. when resuming). ``base`` is any spec
    accepted by :func:`make_reward`. Each pickled copy (e.g. in a subprocess env) keeps its own
    update count, so the trainer must forward progress to every copy.
    """

    max_param_ratio: float | None = None
    max_flop_ratio: float | None = None
    max_latency_ratio: float | None = None
    base: str | Mapping[str, Any] | RewardFn = "n2n"
    eps0: float = 1.0
    anneal_steps: int = 100
    updates: int = 0

    def __post_init__(self) -> None:
        limits = {name: getattr(self, name) for name in _BUDGET_LIMITS.values()}
        if all(v is None for v in limits.values()):
            raise ValueError(f"BudgetReward needs at least one of {sorted(limits)}")
        for name, value in limits.items():
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number or None, got {value!r}")
        if not (isinstance(self.eps0, (int, float)) and 0.0 <= self.eps0 <= 1.0):
            raise ValueError(f"eps0 must be in [0, 1], got {self.eps0!r}")
        if not (isinstance(self.anneal_steps, int) and self.anneal_steps >= 0):
            raise ValueError(f"anneal_steps must be an int >= 0, got {self.anneal_steps!r}")
        self.set_progress(self.updates)
        self.base = make_reward(self.base)

    def epsilon(self, step: int | None = None) -> float:
        """Epsilon after ``step`` updates (default: the current update count)."""
        step = self.updates if step is None else step
        if self.anneal_steps == 0:
            return 0.0
        return self.eps0 * max(0.0, 1.0 - step / self.anneal_steps)

    def step(self) -> float:
        """Count one policy update; return the new epsilon."""
        self.updates += 1
        return self.epsilon()

    def set_progress(self, updates: int) -> float:
        """Set the number of policy updates done so far; return the new epsilon."""
        if not (isinstance(updates, int) and updates >= 0):
            raise ValueError(f"updates must be an int >= 0, got {updates!r}")
        self.updates = updates
        return self.epsilon()

    def within_budget(self, record: Mapping[str, Any]) -> bool:
        """Whether every set limit holds for ``record``; raises if a needed ratio is missing."""
        r = ratios(record)
        return all(
            _required(r, ratio) <= limit
            for ratio, name in _BUDGET_LIMITS.items()
            if (limit := getattr(self, name)) is not None
        )

    def __call__(self, record: Mapping[str, Any]) -> float:
        """Reward of one metrics record under the current epsilon."""
        if not _is_ok(record):
            return _FAILED
        reward = self.base(record)
        if self.within_budget(record):
            return reward
        eps = self.epsilon()
        return (eps - 1.0) + eps * reward


_REWARDS: Mapping[str, RewardFn | type] = MappingProxyType({"n2n": n2n, "ddc": DDCReward, "budget": BudgetReward})


def make_reward(spec: str | Mapping[str, Any] | RewardFn) -> RewardFn:
    """Build a reward from a name (``"n2n"``, ``"ddc"``, ``"budget"``), a dict ``{"name": ..., **options}``,
    or a callable taking the record (returned as is)."""
    if callable(spec):
        return spec
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping):
        options = dict(spec)
        name = options.pop("name", None)
    else:
        raise ValueError(f"reward spec must be a name, a dict with 'name', or a callable, got {spec!r}")
    if not isinstance(name, str) or name not in _REWARDS:
        raise ValueError(f"unknown reward {name!r}; allowed names: {sorted(_REWARDS)}")
    target = _REWARDS[name]
    allowed = [f.name for f in fields(target)] if isinstance(target, type) else []
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for reward {name!r}; allowed: {allowed or 'none'}")
    return target(**options) if isinstance(target, type) else target


def _is_ok(record: Mapping[str, Any]) -> bool:
    """Whether the record's status is "ok"; raises on a missing or unknown status."""
    status = record.get("status")
    if status not in STATUSES:
        raise ValueError(f"record['status'] must be one of {list(STATUSES)}, got {status!r}")
    return status == "ok"


def _required(r: Mapping[str, float | None], name: str) -> float:
    """The ratio ``name``, or a ValueError naming the record keys it needs."""
    value = r[name]
    if value is None:
        student_key, teacher_key = _RATIO_KEYS[name]
        raise ValueError(f"record needs {student_key!r} and {teacher_key!r} (not None) for {name}")
    return value


def _sigmoid(z: float) -> float:
    """Numerically stable logistic function."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
