"""``ddc quickstart``: the whole loop offline in a few minutes, on the MNIST sample shipped in the package.

Trains (or reuses) a LeNet-5 teacher, searches its students at ``fast`` fidelity with masked random search,
evaluates uniform-width references with the same evaluator, and prints one table. Everything is written to
a run folder: the results store (every evaluation) and ``summary.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym

from .arch import uniform_choices
from .paths import atomic_write_text

QUICKSTART_ENV = dict(dataset="mnist_sample", teacher="auto", latency="measured", reward="ddc")
UNIFORM_WIDTHS = (0.25, 0.5, 0.75)


def run_quickstart(out_dir: str | Path, *, episodes: int = 40, seed: int = 0, fidelity: str = "fast",
                   teacher_epochs: int = 8, progress: bool = True) -> list[dict[str, Any]]:
    """Run the quickstart into ``out_dir``; returns the table rows (teacher, best searched, uniform widths)."""
    from agents.random_search import random_search  # agents build on ddc_env, not the other way round

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = gym.make("DDC-LeNet5-MNIST", **QUICKSTART_ENV, fidelity=fidelity, teacher_epochs=teacher_epochs,
                   store=str(out / "results.sqlite"), run="quickstart", seed=seed)
    search = random_search(env, episodes, seed=seed, progress=progress)
    core = env.unwrapped
    best = search.best_info
    rows = [{"method": "teacher", "val_acc": best["teacher_val_acc"], "param_ratio": 1.0, "latency_ratio": 1.0,
             "reward": None, "params": best["teacher_params"]},
            _row(f"random search, best of {episodes}", best)]
    for width in UNIFORM_WIDTHS:
        rows.append(_row(f"uniform width {width:g}", core.evaluate_choices(uniform_choices(core.teacher_spec,
                                                                                             width))))
    summary = {"env": "DDC-LeNet5-MNIST", "env_kwargs": {**QUICKSTART_ENV, "fidelity": fidelity,
                                                         "teacher_epochs": teacher_epochs},
               "seed": seed, "episodes": episodes, "teacher": str(core.teacher.path), "rows": rows,
               "best_spec": best["spec"], "best_choices": best["choices"]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    env.close()
    return rows


def _row(method: str, info: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "val_acc": info["val_acc"], "param_ratio": info.get("param_ratio"),
            "latency_ratio": info.get("latency_ratio"), "reward": info["reward"], "params": info["params"]}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of quickstart rows."""
    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = ["| method | val acc | params | params ratio | latency ratio | reward |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {num(r['val_acc'], '.4f')} | {r['params']:,} | "
                     f"{num(r['param_ratio'], '.3f')} | {num(r['latency_ratio'], '.3f')} | {num(r['reward'], '.3f')} |")
    return "\n".join(lines)
