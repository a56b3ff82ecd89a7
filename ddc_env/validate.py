"""Argument checks shared by every config (env, task, fidelity, reward, agents, baselines, CLI): each raises a
one-line ``ValueError`` that names the bad value and what is allowed, before any work is done."""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterable, Mapping
from typing import Any

__all__ = ["check_bool", "check_choice", "check_int", "check_names", "check_number", "check_overrides"]


def check_names(given: Iterable[str], allowed: Iterable[str], what: str) -> None:
    """Raise when ``given`` holds names outside ``allowed``: "unknown <what> [...]; allowed: [...]"."""
    allowed = list(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {allowed}")


def check_overrides(overrides: Mapping[str, Any], allowed: Iterable[str], what: str) -> dict[str, Any]:
    """``overrides`` as a dict after :func:`check_names`."""
    check_names(overrides, allowed, what)
    return dict(overrides)


def check_int(value: Any, name: str, *, minimum: int = 0, optional: bool = False) -> int | None:
    """``value`` when it is an integer >= ``minimum`` (or None with ``optional``); bools and floats are refused."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = {0: "an integer >= 0", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")
    return int(value)


def check_number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, optional: bool = False) -> float | None:
    """``value`` as a float when it is a finite real number in range (NaN, inf, strings and bools are refused)."""
    if value is None and optional:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"<= {maximum:g}")
        rule = f" {' and '.join(bounds)}" if bounds else ""
        raise ValueError(f"{name} must be a finite number{rule}{' or None' if optional else ''}, got {value!r}")
    return float(value)


def check_bool(value: Any, name: str) -> bool:
    """``value`` when it is a bool."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(value: Any, name: str, allowed: Collection[Any]) -> Any:
    """``value`` when it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {list(allowed)}")
    return value
