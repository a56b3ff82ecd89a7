"""Machinery every agent shares: the search log (progress bar, TensorBoard scalars, best student so far),
the layer-table features controllers read, hyperparameter parsing and atomic agent checkpoints. Agents act
through the Gymnasium API only."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from ddc_env.paths import atomic_write_text, atomic_writer

# terminal-info metrics written to TensorBoard for every finished episode (under "episode/")
EPISODE_SCALARS = ("reward", "val_acc", "acc_ratio", "param_ratio", "flop_ratio", "latency_ratio")
# terminal-info keys of each line of ``episodes.jsonl`` (besides episode, reward and wall_seconds)
EPISODE_FIELDS = ("status", "cache_hit", "val_acc", "acc_ratio", "param_ratio", "flop_ratio", "latency_ratio",
                  "size_bytes", "params", "spec_hash", "eval_seconds")
EPISODES_FILE = "episodes.jsonl"


class SearchLog:
    """Sees every finished episode of a search: a tqdm bar with the best reward and student so far,
    TensorBoard scalars (``episode/*`` per episode, ``search/*`` for the running best and cache-hit rate,
    anything an agent logs with :meth:`scalar`), the best terminal info, kept in ``best.json``, and one JSON
    line per episode in ``episodes.jsonl`` (episode, reward, :data:`EPISODE_FIELDS`, wall seconds).

    ``run_dir=None`` logs nothing to disk. ``start_episode`` continues the count of a resumed search; lines of
    ``episodes.jsonl`` beyond it (episodes logged after the last checkpoint) are dropped.
    """

    def __init__(self, run_dir: str | Path | None, total_episodes: int, *, progress: bool = True,
                 start_episode: int = 0, desc: str = "search") -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.episodes = start_episode
        self.cache_hits = 0
        self.best_reward = -math.inf
        self.best_info: dict[str, Any] | None = None
        self.writer = None
        self._started = time.perf_counter()
        if self.run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            best = self.run_dir / "best.json"
            if start_episode and best.exists():
                saved = json.loads(best.read_text())
                self.best_reward, self.best_info = saved["reward"], saved["info"]
            _truncate_lines(self.run_dir / EPISODES_FILE, start_episode)
        self.bar = tqdm(total=total_episodes, initial=start_episode, desc=desc, unit="episode",
                        disable=not progress)

    def record(self, reward: float, info: dict[str, Any]) -> None:
        """Log one finished episode (its terminal reward and info)."""
        self.episodes += 1
        self.cache_hits += bool(info.get("cache_hit"))
        if reward > self.best_reward:
            self.best_reward, self.best_info = float(reward), dict(info)
            if self.run_dir is not None:
                text = json.dumps({"reward": self.best_reward, "episode": self.episodes, "info": self.best_info},
                                  default=_jsonable)
                atomic_write_text(self.run_dir / "best.json", text)
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
        best = self.best_info or {}
        self.bar.set_postfix(best_reward=f"{self.best_reward:.3f}", acc=f"{best.get('val_acc') or 0:.3f}",
                             params=f"{best.get('param_ratio') or 0:.3f}")
        self.bar.update()

    @property
    def wall_seconds(self) -> float:
        """Seconds since this log started."""
        return time.perf_counter() - self._started

    def _append_episode(self, reward: float, info: dict[str, Any]) -> None:
        """Append the episode's line to ``episodes.jsonl`` (non-finite numbers as null)."""
        entry = {"episode": self.episodes, "reward": float(reward), **{k: info.get(k) for k in EPISODE_FIELDS},
                 "wall_seconds": self.wall_seconds}
        entry = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in entry.items()}
        with open(self.run_dir / EPISODES_FILE, "a") as f:
            f.write(json.dumps(entry, default=_jsonable) + "\n")

    def scalar(self, name: str, value: float, step: int | None = None) -> None:
        """An agent's own scalar (loss, entropy, baseline...), at ``step`` (default: episodes so far)."""
        if self.writer is not None:
            self.writer.add_scalar(name, value, self.episodes if step is None else step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def layer_features(layer_table: list[dict[str, Any]]) -> torch.Tensor:
    """(n_decisions, features) float tensor of the normalised per-decision features from ``reset()``'s info."""
    return torch.tensor(np.array([row["features"] for row in layer_table], dtype=np.float32))


H = TypeVar("H")


def make_hyperparams(cls: type[H], overrides: Mapping[str, Any]) -> H:
    """The dataclass ``cls`` (an agent's ``Hyperparams``) with ``overrides``; an unknown name raises a
    ValueError listing the allowed ones."""
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; allowed: {allowed}")
    return cls(**overrides)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write an agent's state (tensors, state dicts, plain Python values) atomically with ``torch.save``."""
    with atomic_writer(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An agent state written by :func:`save_checkpoint` (loaded on the CPU, tensors and plain values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _truncate_lines(path: Path, keep: int) -> None:
    """Keep the first ``keep`` lines of the text file ``path`` (if it exists and has more)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) > keep:
            atomic_write_text(path, "".join(lines[:keep]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    return str(value)
