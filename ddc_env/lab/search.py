"""Search orchestration: a YAML config names an env id and its arguments, an agent and its hyperparameters;
:func:`run_search` runs the agent into a run folder and leaves everything a report or a resume needs there.

A run folder holds:

- ``config.yaml``: the resolved :class:`SearchConfig` (agent defaults filled in, the store forced to this folder,
  the backend the students are evaluated on: ``--resume`` uses it again unless told another)
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

import contextlib
import dataclasses
import io
import json
import math
import sqlite3
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml

from .. import registration
from ..agents import get_agent
from ..arch import NetSpec
from ..paths import atomic_write_bytes, atomic_write_text
from ..scoring import CachedScorer, Scorer
from ..store import ResultsStore, StoreError
from ..validate import check_int, check_mapping, check_names, check_number
from .backend import BackendOptions, make_backend_scorer, open_backend
from .config import plain, read_yaml, set_dotted
from .runs import (BEST_FILE, BEST_SPEC_FILE, BEST_WEIGHTS_FILE, CHECKPOINT_FILE, CONFIG_FILE, EPISODES_FILE,
                   STORE_FILE, SUMMARY_FILE, BudgetReached, RunLog, json_default, locked, prepare_run_dir,
                   read_progress, removed_on_error)

_REQUIRED = ("env_id", "agent")


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """One search: ``agent`` (a name of :data:`ddc_env.agents.AGENTS`) with ``agent_kwargs`` (its hyperparameters;
    the agent module's defaults fill the rest) on ``gym.make(env_id, **env_kwargs)`` for ``episodes``
    episodes; ``n_envs`` parallel envs (stable-baselines3 agents only); ``init_from`` another run's
    ``agent.ckpt`` to start the controller from (policy transfer); ``backend`` where the students are evaluated
    (:class:`~ddc_env.lab.backend.BackendOptions` as a mapping, e.g. ``{name: ray, workers: 4}``);
    ``budget_seconds`` ends the search before the episode that would take its simulated seconds (the live
    evaluations its students cost) past it."""

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent: str
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    episodes: int = 100
    seed: int = 0
    n_envs: int = 1
    init_from: str | None = None
    backend: dict[str, Any] = field(default_factory=lambda: BackendOptions().to_dict())
    budget_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("env_kwargs", "agent_kwargs"):
            check_mapping(getattr(self, name), name)
        for name, low in (("episodes", 1), ("seed", 0), ("n_envs", 1)):
            check_int(getattr(self, name), name, minimum=low)
        if self.init_from is not None:
            object.__setattr__(self, "init_from", str(self.init_from))
        check_number(self.budget_seconds, "budget_seconds", minimum=0.0, exclusive_minimum=True, optional=True)
        try:  # the env arguments are checked now, not after the run folder exists
            registration.env_config(self.env_id, self.env_kwargs)
        except ValueError as e:
            raise ValueError(f"env_kwargs: {e}") from None
        backend = BackendOptions.from_dict(self.backend)
        if backend.shared and not registration.is_live(self.env_id):
            raise ValueError(f"the {backend.name} backend trains students, but {self.env_id} is a benchmark twin "
                             f"(it looks them up): leave the backend local")
        object.__setattr__(self, "backend", backend.to_dict())
        entry = get_agent(self.agent)
        entry.runner(self.n_envs)  # imports the agent module; rejects n_envs > 1 for one-env agents
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        object.__setattr__(self, "agent_kwargs", _resolve_hyperparams(self.agent, dict(self.agent_kwargs)))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, in field order (what ``config.yaml`` holds)."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        """A config from plain data; unknown or missing keys raise a ValueError naming the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, Mapping):
            raise ValueError(f"a search config is a mapping with keys {allowed}, got {type(data).__name__}")
        check_names(data, allowed, "search config key(s)")
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            hint = " (or pass --agent)" if "agent" in missing else ""
            raise ValueError(f"the search config needs {', '.join(missing)}{hint}")
        return cls(**{k: ({} if v is None and k.endswith("_kwargs") else v) for k, v in data.items()})


def _resolve_hyperparams(agent: str, given: dict[str, Any]) -> dict[str, Any]:
    """The agent's default hyperparameters updated with ``given`` (ValueError for unknown names)."""
    try:
        return plain(get_agent(agent).hyperparams(given))
    except ValueError as e:
        raise ValueError(f"agent_kwargs of {agent!r}: {e}") from None


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


def load_resume_config(run_dir: str | Path, path: str | Path | None = None,
                       overrides: Sequence[str] = ()) -> SearchConfig:
    """The config to continue the search in ``run_dir`` with: the YAML file ``path`` (default: the folder's
    ``config.yaml``) with ``key=value`` overrides, and the saved number of episodes unless an override sets it (a
    resumed search is extended only when asked); :func:`run_search` refuses any other difference from the saved
    config but the backend."""
    saved = read_run_config(run_dir)
    config = load_config(path if path is not None else Path(run_dir) / CONFIG_FILE, overrides)
    if any(item.partition("=")[0].strip() == "episodes" for item in overrides):
        return config
    return dataclasses.replace(config, episodes=saved.episodes)


# ------------------------------------------------------------------------------------------ the search


@dataclass(frozen=True)
class EnvFactory:
    """The ``env_fn`` agents get: ``gym.make(env_id, **kwargs)``; picklable, for subprocess vector envs. With a
    shared ``scorer`` (a Ray pool's client) every env scores through it behind its own cache over the ``store`` of
    ``kwargs``, so the envs of every process use one pool."""

    env_id: str
    kwargs: Mapping[str, Any]
    scorer: Scorer | None = None

    def __call__(self) -> gym.Env:
        if self.scorer is None:
            return gym.make(self.env_id, **self.kwargs)
        cached = CachedScorer(self.scorer, self.kwargs.get("store"), run=self.kwargs.get("run"))
        return gym.make(self.env_id, scorer=cached, **self.kwargs)


def run_search(config: SearchConfig | None, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
               on_start: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Run ``config``'s agent into ``run_dir`` (see the module docstring for what it writes); returns the
    summary. ``resume=True`` continues the search in an existing run folder from its ``config.yaml``
    (``config`` may be None; if given it may differ from the saved one in ``episodes``, to extend the search,
    and ``backend``); finished evaluations come from the results store, never recomputed. A new search needs an
    empty or missing ``run_dir``; the folder is locked while the search runs. ``on_start(run_dir)`` is called
    once the folder is ready, before the agent runs. A shared backend (Ray) starts before the folder is written
    and is shut down at the end."""
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, resume=resume)
    if resume:
        config = _resumed_config(run_dir, config)
    elif config is None:
        raise ValueError("run_search needs a config (None is only allowed with resume=True)")
    if config.init_from is not None and not _checkpoint_exists(Path(config.init_from)):
        raise ValueError(f"--init-from {config.init_from}: no such file (expected another run's {CHECKPOINT_FILE})")
    env_kwargs = dict(config.env_kwargs)
    if registration.is_live(config.env_id):  # a live env keeps every evaluation in the run's results store
        env_kwargs.update(store=str((run_dir / STORE_FILE).resolve()), run=run_dir.name)
    config = dataclasses.replace(config, env_kwargs=env_kwargs)
    entry = get_agent(config.agent)
    run = entry.runner(config.n_envs)
    backend = BackendOptions.from_dict(config.backend)
    # a shared backend starts now (a cluster that cannot be reached fails before anything is written) and stops
    # at the end
    with open_backend(backend, registration.env_config(config.env_id, env_kwargs)) if (
            backend.shared) else contextlib.nullcontext() as shared:
        return _run_search(config, run_dir, run, entry, shared, resume=resume, progress=progress, on_start=on_start)


def _run_search(config: SearchConfig, run_dir: Path, run: Callable[..., None], entry: Any, shared: Scorer | None, *,
                resume: bool, progress: bool, on_start: Callable[[Path], None] | None) -> dict[str, Any]:
    """:func:`run_search` once the config is resolved and a shared backend (if any) is running."""
    env_kwargs = config.env_kwargs
    init_from = Path(config.init_from) if config.init_from is not None else None
    # a new search that fails before it has anything to resume from leaves no folder behind
    cleanup = contextlib.nullcontext() if resume else removed_on_error(run_dir, keep=lambda: _resumable(run_dir))
    with cleanup, locked(run_dir):  # a second process on this folder fails here, before any work
        prepare_run_dir(run_dir, resume=resume)  # again, now that no other process can write the folder
        # build one env before writing anything: bad data or teacher paths fail here, an "auto" teacher trains here
        probe = EnvFactory(config.env_id, {k: v for k, v in env_kwargs.items() if k != "store"}, shared)()
        facts = _env_facts(probe.unwrapped)
        probe.close()
        del probe
        atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))
        checkpoint = run_dir / CHECKPOINT_FILE
        resume_agent = resume and _checkpoint_exists(checkpoint)  # else the agent starts afresh (cache hits)
        state = read_progress(run_dir) if resume_agent else {}
        saved_episodes = getattr(entry.load(), "saved_episodes", None)
        if resume_agent and saved_episodes is not None:  # the agents continue the count their checkpoint holds
            state["episodes"] = saved_episodes(checkpoint)
        if state.get("best", {}).get("info") is not None:  # best.json as of the last recorded episode
            atomic_write_text(run_dir / BEST_FILE, json.dumps(state["best"], default=json_default))
        log = RunLog(run_dir, config.episodes, state=state, progress=progress, desc=f"{config.agent} search",
                     budget_seconds=config.budget_seconds)
        if on_start is not None:
            on_start(run_dir)
        try:
            run(EnvFactory(config.env_id, env_kwargs, shared), episodes=config.episodes, log=log, seed=config.seed,
                checkpoint=checkpoint, resume=resume_agent, init_from=init_from, **config.agent_kwargs)
        except BudgetReached:
            pass  # the simulated-seconds budget is spent: the search ends as if its episodes were
        finally:
            log.close()
        best_student = _export_best(config, run_dir, log.best_info, shared)
        summary = _summary(config, run_dir, log, facts, best_student)
        atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=1, default=json_default))
    return summary


def _resumed_config(run_dir: Path, requested: SearchConfig | None) -> SearchConfig:
    """The run folder's saved config, with ``requested.episodes`` when ``requested`` is given; any other
    difference is an error."""
    saved = read_run_config(run_dir)
    if requested is None:
        return saved
    ignore = {"store", "run"}
    a, b = saved.to_dict(), requested.to_dict()
    for d in (a, b):  # the backend may change: records do not depend on where they were computed
        d.pop("episodes")
        d.pop("backend")
        d["env_kwargs"] = {k: v for k, v in d["env_kwargs"].items() if k not in ignore}
    changed = sorted(k for k in a if a[k] != b[k])
    if changed:
        raise ValueError(f"--resume continues {run_dir / CONFIG_FILE} as saved; only episodes and the backend may "
                         f"change, but "
                         f"{', '.join(changed)} differ{'s' if len(changed) == 1 else ''} "
                         f"(start a new run folder for a different config)")
    return dataclasses.replace(saved, episodes=requested.episodes, backend=requested.backend)


def _resumable(run_dir: Path) -> bool:
    """Whether a search folder holds anything ``--resume`` continues from: an agent checkpoint, a logged episode or
    an evaluation in its results store (an unreadable store counts, to be looked at rather than deleted)."""
    if _checkpoint_exists(run_dir / CHECKPOINT_FILE) or (run_dir / EPISODES_FILE).is_file():
        return True
    if not (run_dir / STORE_FILE).is_file():
        return False
    try:
        with ResultsStore(run_dir / STORE_FILE) as store:
            return store.count() > 0
    except (StoreError, sqlite3.Error):
        return True


def _checkpoint_exists(path: Path) -> bool:
    """Whether an agent checkpoint is at ``path`` (the sb3 agents append ".zip" to the name)."""
    return path.is_file() or path.with_name(path.name + ".zip").is_file()


def _env_facts(env: Any) -> dict[str, Any]:
    """The task and scorer a search runs on (for the summary)."""
    facts: dict[str, Any] = {"env_class": type(env).__name__}
    task = getattr(env, "task", None)
    if task is not None:
        facts["task"] = {"name": task.name, "teacher_id": task.teacher_id, **task.facts}
        if task.teacher is not None:
            facts["teacher"] = {"path": str(task.teacher.path), "sha256": task.teacher.meta.get("sha256"),
                                "model": task.teacher.meta.get("model"), "val_acc": task.teacher.meta.get("val_acc")}
        elif "teacher_path" in task.facts:  # a shared backend's task: its workers hold the teacher
            facts["teacher"] = {"path": task.facts["teacher_path"], "sha256": task.teacher_id,
                                "model": task.facts.get("model"), "val_acc": task.facts.get("teacher_sidecar_val_acc")}
    scorer = getattr(env, "scorer", None)
    if scorer is not None:
        facts["scorer"] = scorer.describe()
    return facts


def _export_best(config: SearchConfig, run_dir: Path, best: dict[str, Any] | None, shared: Scorer | None
                 ) -> dict[str, Any] | None:
    """Save the best student's spec, and (live envs) its weights trained again exactly as it was evaluated (on the
    ``shared`` backend when there is one); returns the file names, or None when no episode produced a valid
    student."""
    if not best or best.get("status") != "ok" or not best.get("spec"):
        return None
    spec = NetSpec.from_dict(best["spec"])
    spec_path, weights_path = run_dir / BEST_SPEC_FILE, run_dir / BEST_WEIGHTS_FILE
    files = {"spec": BEST_SPEC_FILE, "spec_hash": spec.hash()}
    if not registration.is_live(config.env_id):  # a twin has no weights to train: the spec is the result
        atomic_write_text(spec_path, spec.to_json(indent=1))
        return files
    saved = spec_path.is_file() and weights_path.is_file() and NetSpec.from_json(spec_path.read_text()) == spec
    if not saved:  # (a resumed search that found nothing better keeps the files it has)
        scorer = shared or make_backend_scorer(BackendOptions(), registration.env_config(
            config.env_id, {**config.env_kwargs, "store": None}))
        buffer = io.BytesIO()
        torch.save(scorer.student_weights(spec), buffer)
        atomic_write_bytes(weights_path, buffer.getvalue())
        atomic_write_text(spec_path, spec.to_json(indent=1))
    return {**files, "weights": BEST_WEIGHTS_FILE}


def _summary(config: SearchConfig, run_dir: Path, log: RunLog, facts: dict[str, Any],
             best_student: dict[str, Any] | None) -> dict[str, Any]:
    episodes = log.episodes
    if registration.is_live(config.env_id):  # students this search trained: its rows in the results store
        with ResultsStore(run_dir / STORE_FILE) as store:
            evaluations = store.count(run=run_dir.name)
    else:
        evaluations = episodes - log.invalid - log.cache_hits
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
        "evaluations": evaluations,
        "cache_hits": log.cache_hits,
        "cache_hit_rate": log.cache_hits / episodes if episodes else 0.0,
        "invalid_episodes": log.invalid,
        "simulated_seconds": log.simulated_seconds,
        "wall_seconds": log.wall_seconds,
        "seeds": {"search": config.seed, "env": config.env_kwargs.get("seed"),
                  "fidelity": facts.get("scorer", {}).get("fidelity_fields", {}).get("seed")},
        **facts,
    }


__all__ = ["EnvFactory", "SearchConfig", "apply_overrides", "load_config", "load_resume_config", "read_run_config",
           "run_search"]
