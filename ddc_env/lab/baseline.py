"""``ddc baseline``: a compression baseline on a DDC env's task (teacher, data split, fidelity and time model), into
a run folder that ``ddc report`` compares with searches.

A baseline run folder holds ``config.yaml`` (the resolved :class:`BaselineConfig`), ``results.sqlite`` (a results
store with every measured model, intermediate steps included, ``method="baseline:<name>"``), ``models/`` (each final
model's spec + state dict, or TorchScript for a model no spec describes, e.g. int8) and ``summary.json``
(``kind="baseline"``, the config, the teacher's record, every final result, wall seconds and seeds).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .. import registration
from ..baselines import get_baseline
from ..baselines.common import Context
from ..env import make_live_scorer
from ..paths import atomic_write_text
from ..store import ResultsStore
from ..task import load_task
from ..validate import check_int, check_mapping, check_names
from .config import read_yaml, set_dotted
from .runs import CONFIG_FILE, MODELS_DIR, STORE_FILE, SUMMARY_FILE, locked, prepare_run_dir, removed_on_error

__all__ = ["BaselineConfig", "load_baseline_config", "run_baseline"]


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """One baseline run: ``baseline`` (a name of :data:`ddc_env.baselines.BASELINES`) with ``kwargs`` (its
    arguments; the module's defaults fill the rest) on the task, fidelity and time model of
    ``gym.make(env_id, **env_kwargs)`` (a live env); ``seed`` seeds torch before the baseline runs."""

    baseline: str
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        entry = get_baseline(self.baseline)
        for name in ("env_kwargs", "kwargs"):
            check_mapping(getattr(self, name), name)
        check_int(self.seed, "seed")
        if not registration.is_live(self.env_id):
            raise ValueError(f"baselines train real models; {self.env_id!r} is a benchmark twin (use its live env)")
        try:
            registration.env_config(self.env_id, self.env_kwargs)
        except ValueError as e:
            raise ValueError(f"env_kwargs: {e}") from None
        entry.arguments(self.kwargs)  # unknown names and bad values fail now, before any work
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def load_baseline_config(path: str | Path, name: str, overrides: Sequence[str] = ()) -> BaselineConfig:
    """The config of baseline ``name`` from a baselines YAML file (a path, or the name of a packaged one such as
    ``lenet5_mnist``): top-level ``env_id``, ``env_kwargs``, ``seed``, and per-baseline arguments under
    ``baselines.<name>``. ``overrides`` are ``key=value`` with dotted keys into that file (e.g.
    ``baselines.l1_pruning.ratio=0.2``, ``env_kwargs.fidelity=smoke``)."""
    allowed = ("env_id", "env_kwargs", "seed", "baselines")
    data = set_dotted(read_yaml(path, kind="baselines"), overrides, allowed, "baselines config")
    check_names(data, allowed, "baselines config key(s)")
    if "env_id" not in data:
        raise ValueError(f"{path} needs an env_id")
    kwargs = (data.get("baselines") or {}).get(name) or {}
    return BaselineConfig(baseline=name, env_id=data["env_id"], env_kwargs=data.get("env_kwargs") or {},
                          kwargs=kwargs, seed=data.get("seed", 0))


def run_baseline(config: BaselineConfig, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run ``config``'s baseline into the empty or missing ``run_dir``; returns (and writes) the summary."""
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir)
    entry = get_baseline(config.baseline)
    module = entry.load()
    kwargs = entry.arguments(config.kwargs)
    env_config = registration.env_config(config.env_id, config.env_kwargs)
    with removed_on_error(run_dir), locked(run_dir):  # a failed baseline leaves no folder (it cannot resume)
        prepare_run_dir(run_dir)  # again, now that no other process can write the folder
        task = load_task(env_config.task_config(), progress=progress)  # before any file: bad paths fail here
        scorer = make_live_scorer(env_config, task)
        atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump({**config.to_dict(), "kwargs": kwargs},
                                                                sort_keys=False))
        with ResultsStore(run_dir / STORE_FILE) as store:
            ctx = Context(task, scorer, store, run_dir / MODELS_DIR, f"baseline:{config.baseline}",
                          progress=progress)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                module.run(ctx, **kwargs)
        teacher = task.teacher
        summary = {
            "kind": "baseline", "baseline": config.baseline, "config": {**config.to_dict(), "kwargs": kwargs},
            "run_dir": str(run_dir.resolve()),
            "teacher": {"path": str(teacher.path), "sha256": teacher.meta.get("sha256"),
                        "model": teacher.meta.get("model"), **scorer.teacher_record()},
            "scorer": scorer.describe(),
            "results": ctx.results, "evaluations": ctx.evaluations, "wall_seconds": ctx.wall_seconds,
            "seeds": {"baseline": config.seed, "env": config.env_kwargs.get("seed"),
                      "fidelity": scorer.distiller.fidelity.seed},
        }
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=1, default=str))
    return summary
