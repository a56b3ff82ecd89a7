"""Run folders: the one place that names their files, the log every search writes through, and the lock that keeps
two processes out of one folder.

A search run folder holds ``config.yaml``, ``results.sqlite`` (every evaluation), ``tensorboard/``, ``best.json``,
``episodes.jsonl``, ``agent.ckpt``, ``progress.json``, ``best_student.json`` + ``best_student.pt`` and
``summary.json``; a baseline run folder ``config.yaml``, ``results.sqlite``, ``models/`` and ``summary.json``; a
benchmark folder ``config.yaml``, ``episodes.csv``, ``results.json`` and its plots. Each writer takes the folder's
lock (``.lock``) for as long as it runs, so a second ``ddc search --resume`` on the same folder fails at once
instead of writing the same episodes twice.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..paths import atomic_write_text
from ..progress import bar_disable

__all__ = ["BEST_FILE", "BEST_SPEC_FILE", "BEST_WEIGHTS_FILE", "CHECKPOINT_FILE", "CONFIG_FILE", "EPISODES_FILE",
           "EPISODE_FIELDS", "EPISODE_SCALARS", "LOCK_FILE", "MODELS_DIR", "PROGRESS_FILE", "STORE_FILE",
           "SUMMARY_FILE", "TENSORBOARD_DIR", "BudgetReached", "RunLockedError", "RunLog", "SearchLog",
           "default_run_dir", "json_default", "locked", "prepare_run_dir", "read_episodes", "read_progress",
           "removed_on_error"]

CONFIG_FILE = "config.yaml"
STORE_FILE = "results.sqlite"
SUMMARY_FILE = "summary.json"
EPISODES_FILE = "episodes.jsonl"
PROGRESS_FILE = "progress.json"
CHECKPOINT_FILE = "agent.ckpt"
BEST_FILE = "best.json"
BEST_SPEC_FILE, BEST_WEIGHTS_FILE = "best_student.json", "best_student.pt"
MODELS_DIR = "models"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"

# terminal-info metrics written to TensorBoard for every finished episode (under "episode/")
EPISODE_SCALARS = ("reward", "val_acc", "acc_ratio", "param_ratio", "flop_ratio", "latency_ratio",
                   "simulated_seconds")
# terminal-info keys of each line of ``episodes.jsonl`` (besides episode, reward and wall_seconds)
EPISODE_FIELDS = ("status", "cache_hit", "val_acc", "acc_ratio", "param_ratio", "flop_ratio", "latency_ratio",
                  "size_bytes", "params", "spec_hash", "eval_seconds", "simulated_seconds", "masked_actions",
                  "train_seed", "choices", "choice_tokens")


class RunLockedError(ValueError):
    """Another process is writing this run folder."""


class BudgetReached(Exception):
    """Raised by :meth:`RunLog.record` instead of logging an episode that would take the search past its budget of
    simulated seconds; the search ends there (:func:`ddc_env.lab.search.run_search` catches it)."""


def default_run_dir(config: str | Path, name: str) -> Path:
    """A new run folder's default place: ``runs/<config file's stem>-<agent or baseline name>-<local time>``."""
    return Path("runs") / f"{Path(config).stem}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(run_dir: Path, *, resume: bool | None = None) -> None:
    """Check ``run_dir`` before anything is written: a new run needs it missing or empty (``resume=False`` hints
    at --resume, ``None``: the command cannot resume); a resumed one needs its ``config.yaml``."""
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            if run_dir.is_dir() and not any(p.name != LOCK_FILE for p in run_dir.iterdir()):
                raise ValueError(f"nothing was evaluated in {run_dir} (it was stopped before its {CONFIG_FILE} was "
                                 f"written): run the command again without --resume to start it")
            raise ValueError(f"{run_dir} is not a run folder: it has no {CONFIG_FILE}")
    elif run_dir.exists() and (not run_dir.is_dir() or any(p.name != LOCK_FILE for p in run_dir.iterdir())):
        hint = "pass --resume to continue the run in it, or " if resume is False else ""
        raise ValueError(f"the run folder {run_dir} is not empty: {hint}choose another --out")


@contextlib.contextmanager
def removed_on_error(path: Path, keep: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Run the block; when it raises an ``Exception`` and ``keep()`` is false, remove what it created at ``path``:
    the folder (with the parents made for it) if it did not exist, else the entries it added. So a failed command
    leaves no folder that neither a new run nor ``--resume`` could use (an interrupt leaves it, to resume)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    before = set(path.iterdir()) if path.is_dir() else set()
    try:
        yield
    except Exception:
        if not keep():
            for entry in [missing[-1]] if missing else set(path.iterdir()) - before:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock; a second holder gets RunLockedError at once. A folder that was missing is
    created (with its missing parents), and removed again when the block fails before writing anything into it."""
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"{run_dir} is in use by another process (pid {_holder(fd)}); wait for it to "
                                 f"finish or use another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        except BaseException:
            if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
                lock.unlink()
                with contextlib.suppress(OSError):  # only empty folders go
                    for folder in created:
                        folder.rmdir()
            raise
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 32, 0).decode().strip() or "?"
    return "?"


def json_default(value: Any) -> Any:
    """``json.dumps`` default for run files: numpy scalars as Python numbers, anything else as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


class SearchLog:
    """Sees every finished episode of a search: a tqdm bar with the best reward and student so far, TensorBoard
    scalars (``episode/*`` per episode, ``search/*`` for the running best and cache-hit rate, and ``agent/*``: what
    an agent logs with :meth:`scalar`), the best terminal info, kept in ``best.json``, and one JSON line per
    episode in ``episodes.jsonl`` (episode, reward, :data:`EPISODE_FIELDS`, wall seconds).

    ``run_dir=None`` logs nothing to disk. ``start_episode`` continues the count of a resumed search; lines of
    ``episodes.jsonl`` beyond it (episodes logged after the last checkpoint) are dropped.
    """

    def __init__(self, run_dir: str | Path | None, total_episodes: int, *, progress: bool = True,
                 start_episode: int = 0, desc: str = "search") -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.episodes = start_episode
        self.cache_hits = 0
        self.simulated_seconds = 0.0
        self.best_reward = -math.inf
        self.best_info: dict[str, Any] | None = None
        self.writer = None
        self._started = time.perf_counter()
        if self.run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # here: slow to import, and only a run folder needs it

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR))
            best = self.run_dir / BEST_FILE
            if start_episode and best.exists():
                saved = json.loads(best.read_text())
                self.best_reward, self.best_info = saved["reward"], saved["info"]
            _truncate_lines(self.run_dir / EPISODES_FILE, start_episode)
        self.bar = tqdm(total=total_episodes, initial=start_episode, desc=desc, unit="episode",
                        disable=bar_disable(progress))

    def record(self, reward: float, info: Mapping[str, Any]) -> None:
        """Log one finished episode (its terminal reward and info)."""
        self.episodes += 1
        self.cache_hits += bool(info.get("cache_hit"))
        self.simulated_seconds += float(info.get("simulated_seconds") or 0.0)
        if reward > self.best_reward:
            self.best_reward, self.best_info = float(reward), dict(info)
            if self.run_dir is not None:
                text = json.dumps({"reward": self.best_reward, "episode": self.episodes, "info": self.best_info},
                                  default=json_default)
                atomic_write_text(self.run_dir / BEST_FILE, text)
        if self.run_dir is not None:
            self._append_episode(reward, info)
        if self.writer is not None:
            values = {"reward": reward, **info}
            for key in EPISODE_SCALARS:
                value = values.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"episode/{key}", value, self.episodes)
            self.writer.add_scalar("search/best_reward", self.best_reward, self.episodes)
            self.writer.add_scalar("search/cache_hit_rate", self.cache_hits / self.episodes, self.episodes)
            self.writer.add_scalar("search/simulated_seconds", self.simulated_seconds, self.episodes)
        best = self.best_info or {}
        self.bar.set_postfix(best_reward=f"{self.best_reward:.3f}", acc=f"{best.get('val_acc') or 0:.3f}",
                             params=f"{best.get('param_ratio') or 0:.3f}")
        self.bar.update()

    @property
    def wall_seconds(self) -> float:
        """Seconds since this log started."""
        return time.perf_counter() - self._started

    def _append_episode(self, reward: float, info: Mapping[str, Any]) -> None:
        """Append the episode's line to ``episodes.jsonl`` (non-finite numbers as null)."""
        entry = {"episode": self.episodes, "reward": float(reward), **{k: info.get(k) for k in EPISODE_FIELDS},
                 "wall_seconds": self.wall_seconds}
        entry = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in entry.items()}
        with open(self.run_dir / EPISODES_FILE, "a") as f:
            f.write(json.dumps(entry, default=json_default) + "\n")

    def scalar(self, name: str, value: float, step: int | None = None) -> None:
        """An agent's own scalar (loss, entropy, baseline...) as ``agent/<name>``, at ``step`` (default: episodes
        so far)."""
        if self.writer is not None:
            self.writer.add_scalar(f"agent/{name}", value, self.episodes if step is None else step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


class RunLog(SearchLog):
    """A :class:`SearchLog` that also keeps ``progress.json`` (episodes, invalid episodes, wall seconds and the best
    episode) up to date after every episode, atomically, for resuming. Cache hits are not carried over: a resumed
    log counts them again from ``episodes.jsonl``'s kept lines, so they are never counted twice. With
    ``budget_seconds``, an episode that would take the simulated seconds past it is not logged: :meth:`record` raises
    :class:`BudgetReached` instead."""

    def __init__(self, run_dir: Path, total_episodes: int, *, state: Mapping[str, Any], progress: bool,
                 desc: str, budget_seconds: float | None = None) -> None:
        super().__init__(run_dir, total_episodes, progress=progress, start_episode=state.get("episodes", 0),
                         desc=desc)
        kept = _read_lines(run_dir / EPISODES_FILE)
        self.cache_hits = sum(bool(e.get("cache_hit")) for e in kept)
        self.simulated_seconds = sum(float(e.get("simulated_seconds") or 0.0) for e in kept)
        self.invalid = sum(e.get("status") == "invalid" for e in kept)
        self.best_episode = state.get("best", {}).get("episode")
        self._wall_before = state.get("wall_seconds", 0.0)
        self._started = time.perf_counter()
        self.budget_seconds = budget_seconds

    @property
    def wall_seconds(self) -> float:
        """Wall seconds of the whole search, earlier sessions included."""
        return self._wall_before + time.perf_counter() - self._started

    def record(self, reward: float, info: Mapping[str, Any]) -> None:
        seconds = self.simulated_seconds + float(info.get("simulated_seconds") or 0.0)
        if self.budget_seconds is not None and seconds > self.budget_seconds:
            raise BudgetReached(f"the next episode would bring the search to {seconds:.1f} simulated seconds, past "
                                f"its budget of {self.budget_seconds:g}")
        if reward > self.best_reward:
            self.best_episode = self.episodes + 1
        super().record(reward, info)
        self.invalid += info.get("status") == "invalid"
        atomic_write_text(self.run_dir / PROGRESS_FILE, json.dumps(self.state(), default=json_default))

    def state(self) -> dict[str, Any]:
        """What ``progress.json`` holds."""
        return {"episodes": self.episodes, "cache_hits": self.cache_hits, "invalid": self.invalid,
                "simulated_seconds": self.simulated_seconds, "wall_seconds": self.wall_seconds,
                "best": {"reward": self.best_reward, "episode": self.best_episode, "info": self.best_info}}


def read_progress(run_dir: Path) -> dict[str, Any]:
    """A search folder's ``progress.json`` ({} when missing)."""
    path = run_dir / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (none when missing; a torn last line is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def read_episodes(run_dir: Path) -> list[dict[str, Any]]:
    """The lines of a search's ``episodes.jsonl``."""
    return _read_lines(run_dir / EPISODES_FILE)


def _truncate_lines(path: Path, keep: int) -> None:
    """Keep the first ``keep`` lines of the text file ``path`` (if it exists and has more)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) > keep:
            atomic_write_text(path, "".join(lines[:keep]))
