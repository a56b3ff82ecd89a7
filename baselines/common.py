"""Machinery every baseline shares: the env's own teacher, data split, fidelity and evaluator; KD fine-tuning
on the evaluator's cached teacher views; records in the env's format written to the same results store; the
run folder.

A baseline is a module with ``run(ctx: Context, **kwargs) -> None`` that compresses ``ctx.teacher_net`` and
calls :meth:`Context.result` for each final model (and :meth:`Context.log` for intermediate ones, e.g. each
pruning step). A baseline run folder holds:

- ``config.yaml``: the resolved :class:`BaselineConfig`
- ``results.sqlite``: a results store with every measured model (``method="baseline:<name>"``)
- ``models/<label>.json`` + ``models/<label>.pt``: a final model's spec and state dict, or
  ``models/<label>.ts``: a TorchScript module (e.g. an int8 model, which no spec describes)
- ``summary.json``: ``kind="baseline"``, the config, the teacher record, every final result (its record, model
  files, evaluations and wall seconds) and the run's wall seconds and seeds
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

import ddc_env
from ddc_env.arch import NetSpec
from ddc_env.env import DDCEnv, make_config
from ddc_env.metrics import count_flops, count_params, serialized_size
from ddc_env.paths import atomic_write_bytes, atomic_write_text
from ddc_env.registration import ENTRY_POINT
from ddc_env.rewards import ratios
from ddc_env.store import ResultsStore, make_key
from ddc_env.train import LoopResult

CONFIG_FILE, STORE_FILE, SUMMARY_FILE, MODELS_DIR = "config.yaml", "results.sqlite", "summary.json", "models"


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """One baseline run: ``baseline`` (a name of :data:`baselines.BASELINES`) with ``kwargs`` (its
    arguments; the module's defaults fill the rest) on the teacher, data and fidelity of
    ``gym.make(env_id, **env_kwargs)``; ``seed`` seeds torch before the baseline runs."""

    baseline: str
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        from . import get_baseline

        entry = get_baseline(self.baseline)
        if not isinstance(self.env_id, str) or self.env_id not in gym.registry:
            raise ValueError(f"unknown env_id {self.env_id!r}; the DDC ids: {', '.join(ddc_env.ENV_IDS)}")
        if gym.spec(self.env_id).entry_point != ENTRY_POINT:
            raise ValueError(f"baselines run on DDC envs; {self.env_id!r} is not one")
        for name in ("env_kwargs", "kwargs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"{name} must be a mapping of names to values, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        try:
            make_config(**{**gym.spec(self.env_id).kwargs, **self.env_kwargs})
        except ValueError as e:
            raise ValueError(f"env_kwargs: {e}") from None
        entry.arguments(self.kwargs)  # unknown names and bad values fail now, before any work
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def load_baseline_config(path: str | Path, name: str, overrides: Sequence[str] = ()) -> BaselineConfig:
    """The config of baseline ``name`` from a baselines YAML file: top-level ``env_id``, ``env_kwargs``,
    ``seed``, and per-baseline arguments under ``baselines.<name>``. ``overrides`` are ``key=value`` with
    dotted keys into that file (e.g. ``baselines.l1_pruning.ratio=0.2``, ``env_kwargs.fidelity=smoke``)."""
    from agents.search import read_yaml, set_dotted

    allowed = ("env_id", "env_kwargs", "seed", "baselines")
    data = set_dotted(read_yaml(path), overrides, allowed, "baselines config")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"unknown baselines config key(s) {unknown}; allowed: {list(allowed)}")
    if "env_id" not in data:
        raise ValueError(f"{path} needs an env_id")
    kwargs = (data.get("baselines") or {}).get(name) or {}
    return BaselineConfig(baseline=name, env_id=data["env_id"], env_kwargs=data.get("env_kwargs") or {},
                          kwargs=kwargs, seed=data.get("seed", 0))


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "model"


class Context:
    """What a baseline works with: the env's evaluator (teacher, validation split, fidelity, cached teacher
    views, latency measurement), the run folder and its results store."""

    def __init__(self, env: DDCEnv, run_dir: Path, method: str, *, progress: bool = True) -> None:
        self.env, self.run_dir, self.method, self.progress = env, run_dir, method, progress
        self.evaluator = env.evaluator
        self.teacher_net: nn.Module = self.evaluator.teacher
        self.teacher_spec: NetSpec = env.teacher_spec
        self.device, self.precision = self.evaluator.device, self.evaluator.precision
        self.store = ResultsStore(run_dir / STORE_FILE)
        self.results: list[dict[str, Any]] = []
        self.evaluations = 0
        self._started = time.perf_counter()

    def bar(self, items: Sequence[Any], desc: str) -> Iterable[Any]:
        """``items`` with a progress bar named ``desc`` (none when the run is quiet)."""
        return tqdm(items, desc=f"{self.method} {desc}".strip(), disable=not self.progress, leave=False)

    # -- training --------------------------------------------------------------------------------------
    def finetune(self, net: nn.Module, epochs: int | None = None, lr: float | None = None) -> LoopResult | None:
        """KD-train ``net`` in place from the teacher's cached logits (the env's recipe; ``epochs`` and ``lr``
        default to the fidelity's)."""
        return self.evaluator.distill(net, epochs=epochs, lr=lr)

    def train_images(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` training images the evaluator trains on, normalised (for calibration, ranking)."""
        x = self.evaluator.train_x if n is None else self.evaluator.train_x[:n]
        return self.evaluator._normalized(x)

    # -- measuring ---------------------------------------------------------------------------------------
    def measure(self, net: nn.Module, *, spec: NetSpec | None = None, params: int | None = None,
                flops: int | None = None, size_bytes: int | None = None, accuracy: float | None = None,
                latency_ms: float | None = None, **extra: Any) -> dict[str, Any]:
        """A record of ``net`` in the env's format (val accuracy, params, FLOPs, size, latency, teacher values,
        ratios). Values not given are measured: ``spec`` gives params/FLOPs, else the module is counted."""
        teacher = self.evaluator.teacher_record
        shape = (1, *self.evaluator.input_shape)
        record = {
            "status": "ok", "reason": "", "fidelity": self.evaluator.fidelity.name,
            **{f"teacher_{k}": v for k, v in teacher.items()},
            "val_acc": self.evaluator.accuracy(net) if accuracy is None else accuracy,
            "params": params if params is not None else (spec.params if spec else count_params(net)),
            "flops": flops if flops is not None else (spec.flops if spec else count_flops(net, shape)),
            "size_bytes": size_bytes if size_bytes is not None else serialized_size(net),
            "latency_ms": latency_ms if latency_ms is not None else self.evaluator.latency_ms(net),
            **extra,
        }
        if spec is not None:
            record.update(spec=spec.to_dict(), spec_hash=spec.hash())
        record.update(ratios(record))
        return record

    def log(self, label: str, record: dict[str, Any], seconds: float = 0.0) -> dict[str, Any]:
        """Write an (intermediate or final) record to the results store under this baseline's method."""
        self.evaluations += 1
        record = {**record, "label": label, "method": self.method}
        key = make_key(self.evaluator.teacher_id, self.evaluator.data_key, f"{self.method}:{label}",
                       f"{self.evaluator.fidelity_key}:{self.run_dir.name}")
        self.store.put(key, record, teacher=self.evaluator.teacher_id, data=self.evaluator.data_key,
                       spec_hash=record.get("spec_hash", ""), fidelity=self.evaluator.fidelity_key,
                       run=self.run_dir.name, method=self.method, seconds=seconds)
        return record

    def result(self, label: str, net: nn.Module, record: dict[str, Any], *, spec: NetSpec | None = None,
               torchscript: bool = False, seconds: float | None = None, **extra: Any) -> dict[str, Any]:
        """A final model: logged to the store, saved under ``models/`` (spec + state dict, or TorchScript when
        ``torchscript`` or no spec), and listed in the summary with ``extra`` facts."""
        seconds = time.perf_counter() - self._started if seconds is None else seconds
        record = self.log(label, record, seconds)
        models = self.run_dir / MODELS_DIR
        models.mkdir(parents=True, exist_ok=True)
        stem = _slug(label)
        net = net.eval()
        if spec is not None and not torchscript:
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, buffer)
            atomic_write_bytes(models / f"{stem}.pt", buffer.getvalue())
            atomic_write_text(models / f"{stem}.json", spec.to_json(indent=1))
            files = {"spec": f"{MODELS_DIR}/{stem}.json", "weights": f"{MODELS_DIR}/{stem}.pt"}
        else:
            example = torch.zeros(1, *self.evaluator.input_shape)
            with torch.no_grad():
                scripted = torch.jit.trace(net.cpu(), example)
            buffer = io.BytesIO()
            torch.jit.save(scripted, buffer)
            atomic_write_bytes(models / f"{stem}.ts", buffer.getvalue())
            files = {"torchscript": f"{MODELS_DIR}/{stem}.ts"}
        entry = {"label": label, "method": self.method, "record": record, "model": files,
                 "evaluations": self.evaluations, "wall_seconds": seconds, **extra}
        self.results.append(entry)
        return entry

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self._started


def run_baseline(config: BaselineConfig, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run ``config``'s baseline into the empty or missing ``run_dir``; returns (and writes) the summary."""
    from . import get_baseline

    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ValueError(f"the run folder {run_dir} is not empty; choose another --out")
    entry = get_baseline(config.baseline)
    module = entry.load()
    kwargs = entry.arguments(config.kwargs)
    env = gym.make(config.env_id, **{**config.env_kwargs, "store": None}).unwrapped
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump({**config.to_dict(), "kwargs": kwargs},
                                                                sort_keys=False))
        ctx = Context(env, run_dir, f"baseline:{config.baseline}", progress=progress)
        torch.manual_seed(config.seed)
        module.run(ctx, **kwargs)
        teacher = env.teacher
        summary = {
            "kind": "baseline", "baseline": config.baseline, "config": {**config.to_dict(), "kwargs": kwargs},
            "run_dir": str(run_dir.resolve()),
            "teacher": {"path": str(teacher.path), "sha256": teacher.meta.get("sha256"),
                        "model": teacher.meta.get("model"), **ctx.evaluator.teacher_record},
            "fidelity": dataclasses.asdict(ctx.evaluator.fidelity),
            "results": ctx.results, "evaluations": ctx.evaluations, "wall_seconds": ctx.wall_seconds,
            "seeds": {"baseline": config.seed, "env": config.env_kwargs.get("seed"),
                      "fidelity": ctx.evaluator.fidelity.seed},
        }
        ctx.store.close()
    finally:
        env.close()
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=1, default=str))
    return summary


__all__ = ["BaselineConfig", "Context", "load_baseline_config", "run_baseline"]
