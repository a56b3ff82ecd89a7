"""Warnings that point at the user's line (the first frame outside ddc_env and gymnasium), not at library code."""
from __future__ import annotations

import sys
import warnings

__all__ = ["warn_user"]

_LIBRARIES = ("ddc_env", "gymnasium")


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the innermost caller outside ddc_env and gymnasium (e.g. a ``gym.make`` line)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] in _LIBRARIES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
