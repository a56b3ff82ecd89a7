"""A small, learnable synthetic image dataset written in the local npz convention, for fast tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# Patterns that a horizontal flip maps onto themselves, so default flip augmentation keeps classes apart.
PATTERNS = ("hbar", "vbar", "blob", "plus", "ring", "cross")


def _bar(dr: np.ndarray, dc: np.ndarray, theta: np.ndarray, size: int) -> np.ndarray:
    sin, cos = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    across, along = dr * cos - dc * sin, dr * sin + dc * cos
    return np.exp(-across**2 / (2 * 1.3**2)) * (np.abs(along) < 0.35 * size)


def _render(pattern: str, dr: np.ndarray, dc: np.ndarray, jitter: np.ndarray, size: int) -> np.ndarray:
    r = np.hypot(dr, dc)
    if pattern == "hbar":
        return _bar(dr, dc, jitter, size)
    if pattern == "vbar":
        return _bar(dr, dc, np.pi / 2 + jitter, size)
    if pattern == "blob":
        return np.exp(-r**2 / (2 * 3.0**2))
    if pattern == "plus":
        return np.maximum(_bar(dr, dc, jitter, size), _bar(dr, dc, np.pi / 2 + jitter, size))
    if pattern == "ring":
        return np.exp(-(r - 0.25 * size) ** 2 / (2 * 1.2**2))
    return np.maximum(_bar(dr, dc, np.pi / 4 + jitter, size), _bar(dr, dc, 3 * np.pi / 4 + jitter, size))


def _images(n: int, classes: int, size: int, channels: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class k draws ``PATTERNS[k]`` jittered in angle and position, with random gain and Gaussian noise."""
    y = np.arange(n) % classes
    rng.shuffle(y)
    jitter = rng.uniform(-0.12, 0.12, n)
    centre = (size - 1) / 2 + rng.uniform(-3, 3, (n, 2))
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    dr = rows[None] - centre[:, 0, None, None]
    dc = cols[None] - centre[:, 1, None, None]
    img = np.zeros((n, size, size))
    for k in range(classes):
        m = y == k
        img[m] = _render(PATTERNS[k], dr[m], dc[m], jitter[m], size)
    gain = rng.uniform(0.6, 1.0, (n, 1, 1, channels))
    x = 30 + 200 * img[..., None] * gain + rng.normal(0, 25, (n, size, size, channels))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.uint8)


def write_synthetic_npz(directory: str | Path, name: str = "synth", n_train: int = 480, n_test: int = 160,
                        classes: int = 4, size: int = 28, channels: int = 1, seed: int = 0) -> tuple[Path, Path]:
    """Write ``<directory>/<name>_train.npz`` and ``<name>_test.npz`` (x uint8 NHWC, y uint8, classes str),
    class k drawing the k-th of PATTERNS (2 to 6 classes). Returns both paths."""
    if not 2 <= classes <= len(PATTERNS):
        raise ValueError(f"classes must lie in 2..{len(PATTERNS)}; got {classes}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _images(n, classes, size, channels, rng)
        path = directory / f"{name}_{split}.npz"
        np.savez(path, x=x, y=y, classes=np.array(PATTERNS[:classes]))
        paths.append(path)
    return paths[0], paths[1]
