"""Random search: every decision drawn uniformly from the actions ``action_masks()`` allows; in
``action_mode="continuous"`` a keep ratio drawn uniformly from the action space's box (AMC's random warm-up).

The reference every learning agent is compared with. It acts through the Gymnasium API only (reset, step,
action_masks, info), so it runs on any DDC env id.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from ddc_env.paths import atomic_write_text
from ddc_env.progress import bar_disable

from .common import EpisodeLog, make_hyperparams


@dataclass(frozen=True)
class Hyperparams:
    """Random search has no hyperparameters."""


@dataclass
class SearchResult:
    """Every episode's reward and terminal info, and the best of them."""

    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> int:
        return int(np.argmax(self.rewards))

    @property
    def best_reward(self) -> float:
        return self.rewards[self.best]

    @property
    def best_info(self) -> dict[str, Any]:
        return self.infos[self.best]


def random_episode(env: gym.Env, rng: np.random.Generator) -> tuple[float, dict[str, Any]]:
    """One episode of masked uniform random actions (continuous mode: uniform keep ratios); returns the terminal
    reward and info."""
    env.reset()
    space = env.action_space
    while True:
        if isinstance(space, gym.spaces.Box):  # the env maps any ratio in the box to an allowed action
            action: Any = rng.uniform(space.low, space.high).astype(space.dtype)
        elif isinstance(space, gym.spaces.MultiDiscrete):  # one step, one choice per decision
            masks = np.split(env.unwrapped.action_masks(), np.cumsum(space.nvec)[:-1])
            action = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        else:
            action = int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return float(reward), info


def random_search(env: gym.Env, episodes: int, seed: int = 0, progress: bool = True) -> SearchResult:
    """Run ``episodes`` random episodes on ``env``; a tqdm bar shows the best reward so far."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    result = SearchResult()
    with tqdm(total=episodes, desc="random search", unit="episode", disable=bar_disable(progress)) as bar:
        for _ in range(episodes):
            reward, info = random_episode(env, rng)
            result.rewards.append(reward)
            result.infos.append(info)
            best = result.best_info
            bar.set_postfix(best_reward=f"{result.best_reward:.3f}", best_acc=f"{best.get('val_acc', 0):.3f}",
                            best_params=f"{best.get('param_ratio') or 0:.3f}")
            bar.update()
    return result


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """Random search under the agent contract: masked random episodes until ``log.episodes >= episodes``.

    The checkpoint (JSON, written after every episode) holds the numpy RNG state and the episode count, so a
    resumed search (``resume=True`` with an existing checkpoint) draws exactly the actions an uninterrupted
    one would have.
    """
    make_hyperparams(Hyperparams, hyperparams)
    if init_from is not None:
        raise ValueError("random search has no controller to initialise from a checkpoint (init_from)")
    rng = np.random.default_rng(seed)
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = json.loads(Path(checkpoint).read_text())
        if state.get("agent") != "random":
            raise ValueError(f"{checkpoint} is not a random-search checkpoint")
        rng.bit_generator.state = state["rng"]
        log.episodes = state["episodes"]
    env = env_fn()
    try:
        env.reset(seed=seed)
        while log.episodes < episodes:
            reward, info = random_episode(env, rng)
            log.record(reward, info)
            if checkpoint is not None:
                atomic_write_text(checkpoint, json.dumps({"agent": "random", "episodes": log.episodes,
                                                          "rng": rng.bit_generator.state}))
    finally:
        env.close()

