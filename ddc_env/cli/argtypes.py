"""argparse types of the ``ddc`` commands: values checked as they are parsed."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["agent_file", "int_at_least", "non_negative_int", "positive_float", "positive_int"]


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (0: non-negative, 1: positive)."""
    what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {what}")
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """An argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def agent_file(text: str) -> tuple[str, str]:
    """An argparse type: ``AGENT=FILE`` -> (agent, file)."""
    agent, sep, path = text.partition("=")
    if not sep or not agent or not path:
        raise argparse.ArgumentTypeError(f"expected AGENT=FILE, got {text!r}")
    return agent, path
