"""Argument checks shared by every config (env, task, fidelity, reward, agents, baselines, CLI): each raises a
one-line ``ValueError`` that names the bad value and what is allowed, before any work is done."""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import torch

__all__ = ["check_bool", "check_choice", "check_device", "check_int", "check_mapping", "check_names", "check_number",
           "check_numbers", "check_overrides"]


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


def check_int(value: Any, name: str, *, minimum: int = 0, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` when it is an integer in [``minimum``, ``maximum``] (or None with ``optional``); bools and floats
    are refused."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum or (
            maximum is not None and value > maximum):
        what = {0: "an integer >= 0", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        if maximum is not None:
            what = f"an integer in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")
    return int(value)


def check_number(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, exclusive_maximum: bool = False,
                 optional: bool = False) -> float | None:
    """``value`` as a float when it is a finite real number in range (NaN, inf, strings and bools are refused)."""
    if value is None and optional:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if exclusive_maximum else value <= maximum
    if not ok:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
        if maximum is not None:
            bounds.append(f"{'<' if exclusive_maximum else '<='} {maximum:g}")
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


def check_numbers(values: Any, name: str, *, allow_empty: bool = False, **bounds: Any) -> tuple[float, ...]:
    """``values`` as a tuple of floats when it is a list or tuple of numbers that each pass :func:`check_number`
    with ``bounds`` (``minimum``, ``maximum``, ``exclusive_minimum``, ``exclusive_maximum``)."""
    if not isinstance(values, (list, tuple)) or not (values or allow_empty):
        raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}list of numbers, got {values!r}")
    return tuple(check_number(v, f"each of {name}", **bounds) for v in values)


def check_mapping(value: Any, name: str) -> dict[str, Any]:
    """``value`` as a dict when it is a mapping with string keys."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} must be a mapping of names to values, got {value!r}")
    return dict(value)


def check_device(value: Any, name: str = "device") -> str:
    """``value`` when it is "auto" or a device string torch understands ("cpu", "cuda", "cuda:1", ...); whether the
    device is present is checked where it is used."""
    ok = isinstance(value, str)
    if ok and value != "auto":
        try:
            torch.device(value)
        except RuntimeError:
            ok = False
    if not ok:
        raise ValueError(f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return value
