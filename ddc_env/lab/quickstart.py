"""``ddc quickstart``: the whole loop offline in a few minutes, on the MNIST sample shipped in the package.

Trains (or reuses) a LeNet-5 teacher, runs an RL search (MaskablePPO by default) over its students at ``fast``
fidelity, runs the uniform-width baseline and L1 structured pruning to the searched student's params ratio with
the same evaluator, then reports: one table (teacher, best searched student, baselines: val and test accuracy,
params and latency ratios) and the plots. The output folder holds one run folder per part (``search/``,
``uniform/``, ``l1_pruning/``), each usable with ``ddc report`` / ``ddc export``, and ``report/``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..paths import atomic_write_text
from .baseline import BaselineConfig, run_baseline
from .report import Report, make_report
from .runs import removed_on_error
from .search import SearchConfig, run_search

ENV_ID = "DDC-LeNet5-MNIST"
QUICKSTART_ENV = dict(dataset="mnist_sample", teacher="auto")  # the default (calibrated) reward
UNIFORM_WIDTHS = (0.25, 0.5, 0.75)
PARTS = ("search", "uniform", "l1_pruning", "report")
MARKER = "quickstart.txt"
# MaskablePPO sized for a short search: an update every 4 episodes (see configs/lenet5_mnist_maskable_ppo.yaml)
AGENT_KWARGS: dict[str, dict[str, Any]] = {
    "maskable_ppo": {"episodes_per_update": 4, "n_epochs": 8, "learning_rate": 1e-3, "gamma": 1.0,
                     "ent_coef": 0.01},
}


def _prepare(out: Path) -> None:
    """Make ``out`` ready: created if missing; a previous quickstart's parts in it are replaced; any other
    non-empty folder is refused."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"{out} is not empty and holds no earlier quickstart; choose another --out")
        for part in PARTS:
            shutil.rmtree(out / part, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, "written by ddc quickstart; its parts are replaced when it runs again\n")


def run_quickstart(out_dir: str | Path, *, episodes: int = 60, seed: int = 0, fidelity: str = "fast",
                   teacher_epochs: int = 8, agent: str = "maskable_ppo", latency: str = "model",
                   progress: bool = True) -> Report:
    """Run the quickstart into ``out_dir``; returns the report (rows, markdown table, written files)."""
    out = Path(out_dir)
    env_kwargs = {**QUICKSTART_ENV, "fidelity": fidelity, "teacher_epochs": teacher_epochs, "latency": latency,
                  "seed": seed}
    config = SearchConfig(env_id=ENV_ID, env_kwargs=env_kwargs, agent=agent,
                          agent_kwargs=AGENT_KWARGS.get(agent, {}), episodes=episodes, seed=seed)  # checked first
    with removed_on_error(out):  # a failed first quickstart leaves no folder behind
        _prepare(out)
        summary = run_search(config, out / "search", progress=progress)
        best = summary["best_info"]
        if best.get("status") != "ok":
            raise RuntimeError("the search found no valid student")  # cannot happen with masked agents
        run_baseline(BaselineConfig(baseline="uniform", env_id=ENV_ID, env_kwargs=env_kwargs,
                                    kwargs={"widths": list(UNIFORM_WIDTHS)}, seed=seed), out / "uniform",
                     progress=progress)
        ratio = min(best["param_ratio"], 0.9)  # prune to the searched student's size (at least 10% off)
        run_baseline(BaselineConfig(baseline="l1_pruning", env_id=ENV_ID, env_kwargs=env_kwargs,
                                    kwargs={"ratio": ratio, "steps": 3}, seed=seed), out / "l1_pruning",
                     progress=progress)
        return make_report([out / "search", out / "uniform", out / "l1_pruning"], out / "report")
