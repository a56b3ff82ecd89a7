"""Named rewards over a metrics record: ``n2n``, ``ddc`` (the paper's), ``calibrated`` (DDC's sigmoids centred on
the task, the default), budget-constrained, ``amc`` (AMC's -error * log(FLOPs) or -error), and user callables.

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

from .validate import check_choice, check_int, check_names, check_number

__all__ = [
    "STATUSES",
    "AMCReward",
    "BudgetReward",
    "CalibratedReward",
    "DDCReward",
    "RewardFn",
    "ddc",
    "make_env_reward",
    "make_reward",
    "n2n",
    "ratios",
]

RewardFn = Callable[[Mapping[str, Any]], float]
STATUSES = ("ok", "diverged", "invalid")
TIME_TERMS = ("latency", "flops")
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

    ``a, t, p`` are ``acc_threshold, time_threshold, params_threshold`` and ``k`` is ``slope`` (or, per term,
    ``acc_slope``, ``time_slope``, ``params_slope`` when given).
    ``T/T_t`` is the latency ratio (``time="latency"``: the record's ``latency_ms``, from the latency model or
    a paired measurement) or the FLOP ratio (``time="flops"``). Returns -1.0 if status != "ok", so a failed
    student always scores below any valid one (whose reward lies in (0, 1)).
    """

    acc_threshold: float = 0.9
    time_threshold: float = 0.3
    params_threshold: float = 0.6
    slope: float = 15.0
    time: Literal["latency", "flops"] = "latency"
    acc_slope: float | None = None
    time_slope: float | None = None
    params_slope: float | None = None

    def __post_init__(self) -> None:
        for name in ("acc_threshold", "time_threshold", "params_threshold", "slope"):
            check_number(getattr(self, name), name, minimum=0.0, exclusive_minimum=True)
        for name in ("acc_slope", "time_slope", "params_slope"):
            check_number(getattr(self, name), name, minimum=0.0, exclusive_minimum=True, optional=True)
        check_choice(self.time, "time", TIME_TERMS)

    def __call__(self, record: Mapping[str, Any]) -> float:
        """Reward of one metrics record."""
        if not _is_ok(record):
            return _FAILED
        r = ratios(record)
        if self.time == "latency" and r["latency_ratio"] is None:
            raise ValueError("ddc reward with time='latency' needs record['latency_ms'] and "
                             "record['teacher_latency_ms']; time latency or use time='flops'")
        time_ratio = _required(r, "latency_ratio" if self.time == "latency" else "flop_ratio")
        k = self.slope
        return (
            _sigmoid((self.acc_slope or k) * (_required(r, "acc_ratio") - self.acc_threshold))
            * _sigmoid(-(self.time_slope or k) * (time_ratio - self.time_threshold))
            * _sigmoid(-(self.params_slope or k) * (_required(r, "param_ratio") - self.params_threshold))
        )


@dataclass(frozen=True)
class CalibratedReward:
    """DDC's reward with its sigmoids centred where this task's students are, calibrated once per task and fidelity
    from uniform-width students (the env does it at its first reward; :mod:`ddc_env.calibration`).

    The paper's thresholds (accuracy above 90% of the teacher's, time below 30%, params below 60%, slope 15) put
    nearly every student a CPU-scale search meets at a reward of 0. Here, with ``U(w)`` the uniform student of width
    ``w`` (the nearest width the env offers): the accuracy threshold is ``U(floor_width)``'s accuracy ratio (a
    floor: do not lose more than the narrowest uniform student), the time and params thresholds are
    ``U(target_width)``'s ratios (beat the half-width student), and each term's slope is ``steepness`` divided by
    that term's spread between ``U(floor_width)`` and ``U(wide_width)``, so the uniform family spans each sigmoid.
    ``time``: the time term, as in :class:`DDCReward`.
    """

    floor_width: float = 0.25
    target_width: float = 0.5
    wide_width: float = 0.8
    steepness: float = 4.0
    time: Literal["latency", "flops"] = "latency"

    def __post_init__(self) -> None:
        for name in ("floor_width", "target_width", "wide_width"):
            check_number(getattr(self, name), name, minimum=0.0, maximum=1.0, exclusive_minimum=True)
        if not self.floor_width < self.wide_width:
            raise ValueError(f"floor_width must be below wide_width, got {self.floor_width} and {self.wide_width}")
        check_number(self.steepness, "steepness", minimum=0.0, exclusive_minimum=True)
        check_choice(self.time, "time", TIME_TERMS)

    def fit(self, reference: Mapping[str, Mapping[str, Any]]) -> DDCReward:
        """The DDC reward this calibration gives, from the records of the uniform students ``reference`` (keys
        ``"floor"``, ``"target"``, ``"wide"``)."""
        time_key = "latency_ratio" if self.time == "latency" else "flop_ratio"
        values: dict[str, float] = {}
        for term, key in (("acc", "acc_ratio"), ("time", time_key), ("params", "param_ratio")):
            r = {role: _required(ratios(reference[role]), key) for role in ("floor", "target", "wide")}
            spread = max(abs(r["wide"] - r["floor"]), 0.01)  # a flat term (e.g. accuracy at a lenient fidelity)
            values[f"{term}_threshold"] = r["floor"] if term == "acc" else r["target"]
            values[f"{term}_slope"] = self.steepness / spread
        return DDCReward(**values, time=self.time)

    def __call__(self, record: Mapping[str, Any]) -> float:
        raise ValueError("a calibrated reward is fitted to a task first (an env does it at its first reward): "
                         "use CalibratedReward.fit(reference records), or make the env with reward='calibrated'")


def ddc(
    record: Mapping[str, Any],
    *,
    acc_threshold: float = 0.9,
    time_threshold: float = 0.3,
    params_threshold: float = 0.6,
    slope: float = 15.0,
    time: Literal["latency", "flops"] = "latency",
) -> float:
    """DDC reward of ``record``; see :class:`DDCReward`. Status != "ok" gives -1.0."""
    reward = DDCReward(acc_threshold, time_threshold, params_threshold, slope, time)
    return reward(record)


@dataclass
class BudgetReward:
    """Budget-constrained reward (N2N): the base reward within budget, a penalty outside it.

    A budget is any subset of ``max_param_ratio``, ``max_flop_ratio``, ``max_latency_ratio``
    (student/teacher, inclusive). A student within budget gets the base reward ``R``; a violator
    gets ``(eps - 1) + eps * R``; status != "ok" gives -1.0. ``eps`` falls linearly from ``eps0``
    to 0 over ``anneal_episodes`` episodes (N2N anneals it over the search): an env calls
    :meth:`at_episode` with its count of finished episodes before each reward, so the schedule
    runs by itself; outside an env, call it yourself. ``base`` is any spec accepted by
    :func:`make_reward`. Each copy of an env (e.g. in a subprocess vector env) counts its own
    episodes.
    """

    max_param_ratio: float | None = None
    max_flop_ratio: float | None = None
    max_latency_ratio: float | None = None
    base: str | Mapping[str, Any] | RewardFn = "n2n"
    eps0: float = 1.0
    anneal_episodes: int = 100
    episodes: int = 0

    def __post_init__(self) -> None:
        limits = {name: getattr(self, name) for name in _BUDGET_LIMITS.values()}
        if all(v is None for v in limits.values()):
            raise ValueError(f"BudgetReward needs at least one of {sorted(limits)}")
        for name, value in limits.items():
            check_number(value, name, minimum=0.0, exclusive_minimum=True, optional=True)
        check_number(self.eps0, "eps0", minimum=0.0, maximum=1.0)
        check_int(self.anneal_episodes, "anneal_episodes")
        self.at_episode(self.episodes)
        self.base = make_reward(self.base)

    def epsilon(self, episode: int | None = None) -> float:
        """Epsilon at ``episode`` finished episodes (default: the current count)."""
        episode = self.episodes if episode is None else episode
        if self.anneal_episodes == 0:
            return 0.0
        return self.eps0 * max(0.0, 1.0 - episode / self.anneal_episodes)

    def at_episode(self, episodes: int) -> float:
        """Set the number of episodes finished so far; return the epsilon the next reward uses."""
        self.episodes = check_int(episodes, "episodes")
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


@dataclass(frozen=True)
class AMCReward:
    """AMC's rewards (He et al. 2018), from the validation error ``1 - val_acc``: ``objective="flops"`` is
    ``-error * log(FLOPs)`` (accuracy and compute together), ``"error"`` is ``-error`` (for a search whose actions are
    clipped to a budget, which then holds for every student). A failed student gets the value of error 1 at the
    teacher's FLOPs (resp. -1), below every ok student's."""

    objective: Literal["flops", "error"] = "flops"

    def __post_init__(self) -> None:
        check_choice(self.objective, "objective", ("flops", "error"))

    def __call__(self, record: Mapping[str, Any]) -> float:
        flops = "flops" if _is_ok(record) else "teacher_flops"
        error = 1.0 - float(record["val_acc"]) if _is_ok(record) else 1.0
        if self.objective == "error":
            return -error
        if not record.get(flops):
            raise ValueError(f"record needs {flops!r} (> 0) for the AMC FLOPs reward")
        return -error * math.log(float(record[flops]))


_REWARDS: Mapping[str, RewardFn | type] = MappingProxyType({"n2n": n2n, "ddc": DDCReward, "budget": BudgetReward,
                                                           "calibrated": CalibratedReward, "amc": AMCReward})


def make_env_reward(spec: str | Mapping[str, Any] | RewardFn, time: str) -> RewardFn:
    """:func:`make_reward` of ``spec`` for an env whose records time students by ``time`` ("latency" or
    "flops"): every "ddc" reward in it takes that time term unless it names one."""
    check_choice(time, "time", TIME_TERMS)
    return make_reward(_with_time(spec, time))


def _with_time(spec: Any, time: str) -> Any:
    if spec in ("ddc", "calibrated"):
        return {"name": spec, "time": time}
    if isinstance(spec, Mapping) and spec.get("name") in ("ddc", "calibrated"):
        return {"time": time, **spec}
    if isinstance(spec, Mapping) and spec.get("name") == "budget" and "base" in spec:
        return {**spec, "base": _with_time(spec["base"], time)}
    return spec


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
    check_names(options, allowed, f"option(s) for reward {name!r}")
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
