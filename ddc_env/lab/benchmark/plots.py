"""The plots of a benchmark: anytime curves (best reward so far against evaluations and against simulated seconds)
and performance profiles, with 95% bootstrap bands (``rliable``), as PNGs."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .reference import Reference
from .scores import REPS, RunCurve, seeded

__all__ = ["plot_anytime", "plot_profiles"]

CURVE_POINTS = 40  # budget points of an anytime curve's intervals


def _mean_curves(curves: Mapping[str, np.ndarray], reps: int
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per agent, the mean over runs of a (runs, points) curve with its 95% stratified bootstrap band."""
    from rliable import library as rly  # here and below: rliable and matplotlib are slow to import
    from rliable import metrics

    def mean(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_mean(scores[:, :, i]) for i in range(scores.shape[-1])])

    with seeded():
        points, intervals = rly.get_interval_estimates({k: v[:, None, :] for k, v in curves.items()}, mean,
                                                       reps=reps)
    return {k: (points[k], intervals[k][0], intervals[k][1]) for k in curves}


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Any, ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_anytime(runs: Mapping[str, Sequence[RunCurve]], reference: Reference | None, *, budget: int,
                 title: str, out_evaluations: Path, out_seconds: Path, reps: int = REPS) -> None:
    """Best reward so far against evaluations and against simulated seconds: the mean over seeds with a 95% bootstrap
    band per agent; random search's expected best of ``k`` (dashed) and the best reward there is (dotted)."""
    points = np.unique(np.linspace(1, budget, min(budget, CURVE_POINTS)).round().astype(int))
    by_evals = _mean_curves({a: np.stack([r.best_so_far(points) for r in rs]) for a, rs in runs.items()}, reps)
    fig, ax = _axes(title, "evaluations (episodes)", "best reward so far")
    for agent, (mean, low, high) in by_evals.items():
        ax.plot(points, mean, label=agent)
        ax.fill_between(points, low, high, alpha=0.15)
    if reference is not None:
        ks = np.arange(1, budget + 1)
        ax.plot(ks, [reference.expected_best(k) for k in ks], "k--", lw=1,
                label=f"random, expected ({reference.method})")
        if reference.best is not None:
            ax.axhline(reference.best, color="k", ls=":", lw=1, label=reference.best_source)
    _save(fig, ax, out_evaluations)

    start = max(r.seconds[0] for rs in runs.values() for r in rs if len(r.seconds))
    end = max(r.seconds[-1] for rs in runs.values() for r in rs if len(r.seconds))
    grid = np.linspace(start, max(end, start), CURVE_POINTS)
    by_seconds = _mean_curves({a: np.stack([r.best_by_seconds(grid) for r in rs]) for a, rs in runs.items()},
                              reps)
    fig, ax = _axes(title + " (a run that ended keeps its best)", "simulated seconds (live evaluations)",
                    "best reward so far")
    for agent, (mean, low, high) in by_seconds.items():
        ax.plot(grid, mean, label=agent)
        ax.fill_between(grid, low, high, alpha=0.15)
    _save(fig, ax, out_seconds)


def plot_profiles(normalized: Mapping[str, np.ndarray], *, title: str, out: Path, reps: int = REPS) -> None:
    """Performance profiles (fraction of runs with a normalized score above tau) with 95% bootstrap bands."""
    from rliable import library as rly

    values = np.concatenate(list(normalized.values()))
    taus = np.linspace(min(0.0, values.min()), max(1.0, values.max()), 81)
    with seeded():
        profiles, cis = rly.create_performance_profile({k: v[:, None] for k, v in normalized.items()}, taus,
                                                       reps=reps)
    fig, ax = _axes(title, "normalized score tau (0: random search's expected best, 1: the best)",
                    "fraction of runs with score > tau")
    for agent, profile in profiles.items():
        ax.plot(taus, profile, label=agent)
        ax.fill_between(taus, cis[agent][0], cis[agent][1], alpha=0.15)
    _save(fig, ax, out)
