"""Validation splits carved from the training file, and deterministic stratified caps.

All functions work on label arrays in file order and return sorted position arrays, so a split of the full
dataset restricted to a class subset equals the split of that subset: a subset's validation images are always
among the images its full-dataset teacher never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError

SPLIT_METHODS = ("every", "random")


def class_rank(y: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """Each sample's position among the samples of its own class: in file order, or ordered by ``keys``."""
    n = len(y)
    order = np.argsort(y, kind="stable") if keys is None else np.lexsort((keys, y))
    ys = y[order]
    starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]]) if n else np.zeros(0, np.int64)
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - run_start
    return rank


def random_keys(n: int, seed: int) -> np.ndarray:
    """``n`` uint64 sort keys from PCG64(seed); bit-generator streams are stable across numpy versions."""
    return np.random.PCG64(seed).random_raw(n)


def stratified_cap(y: np.ndarray, max_n: int, keys: np.ndarray | None = None) -> np.ndarray:
    """Positions of ``max_n`` samples keeping class proportions: each class contributes its first samples
    (file order, or by ``keys``), interleaved by relative position; the result is nested in ``max_n``."""
    if max_n >= len(y):
        return np.arange(len(y))
    counts = np.bincount(y)
    frac = (class_rank(y, keys) + 0.5) / counts[y]
    return np.sort(np.lexsort((y, frac))[:max_n])


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class ValSplit:
    """How validation samples are carved from the training file.

    ``method="every"``: within each class, every ``every``-th training sample in file order (class-wise
    positions 0, every, 2*every, ...). ``method="random"``: within each class, a seeded random
    ``round(fraction * class_count)`` samples.
    """

    method: str = "every"
    every: int = 10
    fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise DataError(f"val_split {self.method!r} is unknown; allowed: {', '.join(SPLIT_METHODS)}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 2:
            raise DataError(f"val_every must be an integer >= 2; got {self.every!r}")
        if isinstance(self.fraction, (bool, str)) or not 0.0 < float(self.fraction) < 1.0:
            raise DataError(f"val_fraction must lie strictly between 0 and 1; got {self.fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DataError(f"seed must be a non-negative integer; got {self.seed!r}")

    def keys(self, n: int) -> np.ndarray | None:
        """Per-sample ordering keys (None = file order) used for the split and for caps."""
        return random_keys(n, self.seed) if self.method == "random" else None

    def indices(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(train positions, val positions) into the training file with labels ``y``, both sorted."""
        y = np.asarray(y)
        if self.method == "every":
            is_val = class_rank(y) % self.every == 0
        else:
            counts = np.bincount(y)
            n_val = np.floor(self.fraction * counts + 0.5).astype(np.int64)
            is_val = class_rank(y, self.keys(len(y))) < n_val[y]
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (for teacher sidecars and cache keys)."""
        if self.method == "every":
            text = (f"within each class, every {_ordinal(self.every)} training sample in file order "
                    f"(class-wise positions 0, {self.every}, {2 * self.every}, ...)")
            return {"method": "every", "every": self.every, "text": text}
        text = (f"within each class, a seeded random {self.fraction:g} of the training samples "
                f"(PCG64 seed {self.seed}, rounded per class)")
        return {"method": "random", "fraction": float(self.fraction), "seed": self.seed, "text": text}
