"""Search orchestration: a YAML config names an env id and its arguments, an agent and its hyperparameters;
:func:`run_search` runs the agent into a run folder and leaves everything a report or a resume needs there.

A run folder holds:

- ``config.yaml``: the resolved :class:`SearchConfig` (agent defaults filled in, the store forced to this folder)
- ``results.sqlite``: the results store, every evaluation of the run (the reward cache and the resume point)
- ``tensorboard/``: per-episode and search scalars; ``best.json``: the best episode so far
- ``episodes.jsonl``: one JSON line per finished episode (reward, status, cache hit, accuracy, ratios, size,
  params, spec hash, evaluation and wall seconds), what ``ddc report`` plots
- ``agent.ckpt``: the agent's checkpoint; ``progress.json``: episodes finished, cache hits, wall seconds
- ``best_student.json`` + ``best_student.pt``: the best student's spec and its trained weights
  (``build(NetSpec.from_json(...)).load_state_dict(torch.load(...))``)
- ``summary.json``: ``kind="search"``, config, episodes, best reward and info, evaluations, cache-hit rate, wall
  seconds, seeds

Example::

    config = load_config("configs/lenet5_mnist_reinforce.yaml", ["episodes=20", "env_kwargs.fidelity=smoke"])
    summary = run_search(config, "runs/try")
    summary = run_search(None, "runs/try", resume=True)   # after a crash or a kill
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml

import ddc_env
from ddc_env.arch import NetSpec
from ddc_env.env import make_config
from ddc_env.paths import atomic_write_bytes, atomic_write_text
from ddc_env.registration import ENTRY_POINT
from ddc_env.store import ResultsStore

from . import get_agent
from .common import SearchLog

CONFIG_FILE, PROGRESS_FILE, CHECKPOINT_FILE, STORE_FILE = "config.yaml", "progress.json", "agent.ckpt", \
    "results.sqlite"
BEST_SPEC_FILE, BEST_WEIGHTS_FILE, SUMMARY_FILE = "best_student.json", "best_student.pt", "summary.json"
_REQUIRED = ("env_id", "agent")


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """One search: ``agent`` (a name of :data:`agents.AGENTS`) with ``agent_kwargs`` (its hyperparameters;
    the agent module's defaults fill the rest) on ``gym.make(env_id, **env_kwargs)`` for ``episodes``
    episodes; ``n_envs`` parallel envs (stable-baselines3 agents only); ``init_from`` another run's
    ``agent.ckpt`` to start the controller from (policy transfer)."""

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent: str
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    episodes: int = 100
    seed: int = 0
    n_envs: int = 1
    init_from: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or self.env_id not in gym.registry:
            raise ValueError(f"unknown env_id {self.env_id!r}; the DDC ids: {', '.join(ddc_env.ENV_IDS)}")
        for name in ("env_kwargs", "agent_kwargs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"{name} must be a mapping of names to values, got {value!r}")
        for name, low in (("episodes", 1), ("seed", 0), ("n_envs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.init_from is not None:
            object.__setattr__(self, "init_from", str(self.init_from))
        spec = gym.spec(self.env_id)
        if spec.entry_point == ENTRY_POINT:  # check the DDCEnv arguments now, not after the run folder exists
            try:
                make_config(**{**spec.kwargs, **self.env_kwargs})
            except ValueError as e:
                raise ValueError(f"env_kwargs: {e}") from None
        entry = get_agent(self.agent)
        entry.runner(self.n_envs)  # imports the agent module; rejects n_envs > 1 for one-env agents
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        object.__setattr__(self, "agent_kwargs", _resolve_hyperparams(self.agent, dict(self.agent_kwargs)))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, in field order (what ``config.yaml`` holds)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        """A config from plain data; unknown or missing keys raise a ValueError naming the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, Mapping):
            raise ValueError(f"a search config is a mapping with keys {allowed}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"unknown search config key(s) {unknown}; allowed: {allowed}")
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            hint = " (or pass --agent)" if "agent" in missing else ""
            raise ValueError(f"the search config needs {', '.join(missing)}{hint}")
        return cls(**{k: ({} if v is None and k.endswith("_kwargs") else v) for k, v in data.items()})


def _resolve_hyperparams(agent: str, given: dict[str, Any]) -> dict[str, Any]:
    """The agent's default hyperparameters updated with ``given`` (ValueError for unknown names)."""
    try:
        return _plain(get_agent(agent).hyperparams(given))
    except ValueError as e:
        raise ValueError(f"agent_kwargs of {agent!r}: {e}") from None


def _plain(value: Any) -> Any:
    """``value`` as YAML/JSON-friendly plain data (tuples as lists, numpy scalars as Python numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------ YAML configs


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_scalar(text: str) -> Any:
    """A ``--set`` value as a YAML scalar (or flow collection): ``3`` -> 3, ``1e-3`` -> 0.001, ``[1, 2]``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse the value {text!r}: {' '.join(str(e).split())}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; a missing file or a non-mapping raises a ValueError / OSError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no config file {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def set_dotted(data: dict[str, Any], overrides: Sequence[str], allowed: Sequence[str],
               what: str = "config") -> dict[str, Any]:
    """A deep copy of ``data`` with each ``key=value`` applied in order: dotted keys reach into mappings (created
    when missing), values parse as YAML scalars, the first key must be one of ``allowed``."""
    out = json.loads(json.dumps(data, default=str))  # a deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ValueError(f"an override is key=value with a dotted key (e.g. env_kwargs.fidelity=smoke), "
                             f"got {item!r}")
        if path[0] not in allowed:
            raise ValueError(f"unknown {what} key {path[0]!r} in override {item!r}; allowed: {list(allowed)}")
        node = out
        for depth, name in enumerate(path[:-1]):
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            if not isinstance(child, dict):
                raise ValueError(f"cannot set {key}: {'.'.join(path[:depth + 1])} is {child!r}, not a mapping")
            node = child
        node[path[-1]] = parse_scalar(text)
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``key=value`` applied in order (see :func:`set_dotted`). Changing ``agent`` drops the
    previous agent's ``agent_kwargs`` (with a warning), so a config written for one agent runs another with that
    agent's defaults."""
    allowed = [f.name for f in dataclasses.fields(SearchConfig)]
    out = json.loads(json.dumps(data, default=str))
    for item in overrides:
        previous = out.get("agent")
        out = set_dotted(out, [item], allowed, "search config")
        if item.partition("=")[0].strip() == "agent" and out["agent"] != previous and out.get("agent_kwargs"):
            warnings.warn(f"agent {out['agent']!r} replaces {previous!r}: the config's agent_kwargs "
                          f"{sorted(out['agent_kwargs'])} are dropped", UserWarning, stacklevel=2)
            out["agent_kwargs"] = {}
    return out


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> SearchConfig:
    """The search config in the YAML file ``path`` with ``key=value`` overrides applied (see
    :func:`apply_overrides`); unknown keys and bad values raise a ValueError naming what is allowed."""
    return SearchConfig.from_dict(apply_overrides(read_yaml(path), overrides))


def read_run_config(run_dir: str | Path) -> SearchConfig:
    """The config a run folder was started with (its ``config.yaml``)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run folder: it has no {CONFIG_FILE}")
    return SearchConfig.from_dict(read_yaml(path))


# ------------------------------------------------------------------------------------------ the search


@dataclass(frozen=True)
class EnvFactory:
    """The ``env_fn`` agents get: ``gym.make(env_id, **kwargs)``; picklable, for subprocess vector envs."""

    env_id: str
    kwargs: Mapping[str, Any]

    def __call__(self) -> gym.Env:
        return gym.make(self.env_id, **self.kwargs)


class RunLog(SearchLog):
    """A :class:`SearchLog` that also keeps ``progress.json`` (episodes, cache hits, invalid episodes, wall
    seconds and the best episode) up to date after every episode, atomically, for resuming."""

    def __init__(self, run_dir: Path, total_episodes: int, *, state: Mapping[str, Any], progress: bool,
                 desc: str) -> None:
        super().__init__(run_dir, total_episodes, progress=progress, start_episode=state.get("episodes", 0),
                         desc=desc)
        self.cache_hits = state.get("cache_hits", 0)
        self.invalid = state.get("invalid", 0)
        self.best_episode = state.get("best", {}).get("episode")
        self._wall_before = state.get("wall_seconds", 0.0)
        self._started = time.perf_counter()

    @property
    def wall_seconds(self) -> float:
        """Wall seconds of the whole search, earlier sessions included."""
        return self._wall_before + time.perf_counter() - self._started

    def record(self, reward: float, info: dict[str, Any]) -> None:
        if reward > self.best_reward:
            self.best_episode = self.episodes + 1
        super().record(reward, info)
        self.invalid += info.get("status") == "invalid"
        atomic_write_text(self.run_dir / PROGRESS_FILE, json.dumps(self.state(), default=_json_default))

    def state(self) -> dict[str, Any]:
        """What ``progress.json`` holds."""
        return {"episodes": self.episodes, "cache_hits": self.cache_hits, "invalid": self.invalid,
                "wall_seconds": self.wall_seconds,
                "best": {"reward": self.best_reward, "episode": self.best_episode, "info": self.best_info}}


def _json_default(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def run_search(config: SearchConfig | None, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
               on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Run ``config``'s agent into ``run_dir`` (see the module docstring for what it writes); returns the
    summary. ``resume=True`` continues the search in an existing run folder from its ``config.yaml``
    (``config`` may be None; if given it may differ from the saved one in ``episodes`` only, to extend the
    search); finished evaluations come from the results store, never recomputed. A new search needs an
    empty or missing ``run_dir``. ``on_start(run_dir)`` is called once the folder is ready, before the
    agent runs."""
    run_dir = Path(run_dir)
    if resume:
        config = _resumed_config(run_dir, config)
    elif config is None:
        raise ValueError("run_search needs a config (None is only allowed with resume=True)")
    elif run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ValueError(f"the run folder {run_dir} is not empty: pass --resume to continue the search in it, "
                         f"or choose another --out")
    init_from = Path(config.init_from) if config.init_from is not None else None
    if init_from is not None and not _checkpoint_exists(init_from):
        raise ValueError(f"init_from {init_from} is not a file (expected another run's {CHECKPOINT_FILE})")
    env_kwargs = {**config.env_kwargs, "store": str((run_dir / STORE_FILE).resolve()), "run": run_dir.name}
    config = dataclasses.replace(config, env_kwargs=env_kwargs)
    entry = get_agent(config.agent)
    run = entry.runner(config.n_envs)

    # build one env before writing anything: bad data or teacher paths fail here, an "auto" teacher trains here
    probe = EnvFactory(config.env_id, {**env_kwargs, "store": None})()
    facts = _env_facts(probe.unwrapped)
    probe.close()
    del probe

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
    checkpoint = run_dir / CHECKPOINT_FILE
    resume_agent = resume and _checkpoint_exists(checkpoint)  # else the agent starts afresh (cache hits)
    state = _read_progress(run_dir) if resume_agent else {}
    saved_episodes = getattr(entry.load(), "saved_episodes", None)
    if resume_agent and saved_episodes is not None:  # the sb3 agents continue the count their checkpoint holds
        state["episodes"] = saved_episodes(checkpoint)
    if state.get("best", {}).get("info") is not None:  # best.json as of the last recorded episode
        atomic_write_text(run_dir / "best.json", json.dumps(state["best"], default=_json_default))
    log = RunLog(run_dir, config.episodes, state=state, progress=progress, desc=f"{config.agent} search")
    if on_start is not None:
        on_start(run_dir)
    try:
        run(EnvFactory(config.env_id, env_kwargs), episodes=config.episodes, log=log, seed=config.seed,
            checkpoint=checkpoint, resume=resume_agent, init_from=init_from, **config.agent_kwargs)
    finally:
        log.close()
    best_student = _export_best(config, run_dir, log.best_info)
    summary = _summary(config, run_dir, log, facts, best_student)
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=1, default=_json_default))
    return summary


def _resumed_config(run_dir: Path, requested: SearchConfig | None) -> SearchConfig:
    """The run folder's saved config, with ``requested.episodes`` when ``requested`` is given; any other
    difference is an error."""
    saved = read_run_config(run_dir)
    if requested is None:
        return saved
    ignore = {"store", "run"}
    a, b = saved.to_dict(), requested.to_dict()
    for d in (a, b):
        d.pop("episodes")
        d["env_kwargs"] = {k: v for k, v in d["env_kwargs"].items() if k not in ignore}
    changed = sorted(k for k in a if a[k] != b[k])
    if changed:
        raise ValueError(f"--resume continues {run_dir / CONFIG_FILE} as saved; only episodes may change, but "
                         f"{', '.join(changed)} differ{'s' if len(changed) == 1 else ''} "
                         f"(start a new run folder for a different config)")
    return dataclasses.replace(saved, episodes=requested.episodes)


def _checkpoint_exists(path: Path) -> bool:
    """Whether an agent checkpoint is at ``path`` (the sb3 agents append ".zip" to the name)."""
    return path.is_file() or path.with_name(path.name + ".zip").is_file()


def _read_progress(run_dir: Path) -> dict[str, Any]:
    path = run_dir / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _env_facts(env: Any) -> dict[str, Any]:
    """The teacher and fidelity a search runs on (for the summary)."""
    facts: dict[str, Any] = {"env_class": type(env).__name__}
    teacher = getattr(env, "teacher", None)
    if teacher is not None:
        facts["teacher"] = {"path": str(teacher.path), "sha256": teacher.meta.get("sha256"),
                            "model": teacher.meta.get("model"), "val_acc": teacher.meta.get("val_acc")}
    evaluator = getattr(env, "evaluator", None)
    if evaluator is not None:
        facts["fidelity"] = dataclasses.asdict(evaluator.fidelity)
    return facts


def _export_best(config: SearchConfig, run_dir: Path, best: dict[str, Any] | None) -> dict[str, Any] | None:
    """Train the best student again exactly as it was evaluated and save its spec and weights; returns the
    file names, or None when no episode produced a valid student."""
    if not best or best.get("status") != "ok" or not best.get("spec"):
        return None
    spec = NetSpec.from_dict(best["spec"])
    spec_path, weights_path = run_dir / BEST_SPEC_FILE, run_dir / BEST_WEIGHTS_FILE
    saved = spec_path.is_file() and weights_path.is_file() and NetSpec.from_json(spec_path.read_text()) == spec
    if not saved:  # (a resumed search that found nothing better keeps the files it has)
        env = EnvFactory(config.env_id, {**config.env_kwargs, "store": None})()
        try:
            student, _ = env.unwrapped.evaluator.train_student(spec)
        finally:
            env.close()
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}, buffer)
        atomic_write_bytes(weights_path, buffer.getvalue())
        atomic_write_text(spec_path, spec.to_json(indent=1))
    return {"spec": BEST_SPEC_FILE, "weights": BEST_WEIGHTS_FILE, "spec_hash": spec.hash()}


def _summary(config: SearchConfig, run_dir: Path, log: RunLog, facts: dict[str, Any],
             best_student: dict[str, Any] | None) -> dict[str, Any]:
    with ResultsStore(run_dir / STORE_FILE) as store:
        evaluations, rows = store.count(run=run_dir.name), store.count()
    episodes = log.episodes
    hits = max(episodes - log.invalid - evaluations, 0)  # valid episodes whose student was already stored
    best = log.best_info or {}
    return {
        "kind": "search",
        "config": config.to_dict(),
        "run_dir": str(run_dir.resolve()),
        "episodes": episodes,
        "best_reward": log.best_reward if math.isfinite(log.best_reward) else None,
        "best_episode": log.best_episode,
        "best_info": best,
        "best_student": best_student,
        "evaluations": evaluations,  # students this run trained: its rows in the results store
        "store_rows": rows,
        "cache_hits": hits,
        "cache_hit_rate": hits / episodes if episodes else 0.0,
        "invalid_episodes": log.invalid,
        "wall_seconds": log.wall_seconds,
        "seeds": {"search": config.seed, "env": config.env_kwargs.get("seed"),
                  "fidelity": facts.get("fidelity", {}).get("seed")},
        **facts,
    }


__all__ = ["EnvFactory", "RunLog", "SearchConfig", "apply_overrides", "load_config", "parse_scalar",
           "read_run_config", "run_search", "set_dotted"]
