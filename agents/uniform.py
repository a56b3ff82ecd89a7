"""The uniform-width reference as an agent: one episode per width below 1.0, taking that width at every step
that allows it (the removal pass and unshrinkable decisions keep their unit at full width).

It plays through the Gymnasium API (reset, step, action_masks) like any agent, so its students are evaluated,
cached and logged exactly as a search's are. It has ``len(width_choices) - 1`` episodes at most: it stops
after the last width even when ``episodes`` is larger.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ddc_env.paths import atomic_write_text

from .common import EpisodeLog, make_hyperparams


@dataclass(frozen=True)
class Hyperparams:
    """The uniform reference has no hyperparameters."""


def width_actions(env: gym.Env) -> list[int]:
    """Action indices of the widths below 1.0 (action 0 removes, action k keeps ``width_choices[k - 1]``)."""
    widths = env.unwrapped.task.width_choices
    return [1 + k for k, w in enumerate(widths) if w < 1.0]


def uniform_episode(env: gym.Env, action: int) -> tuple[float, dict[str, Any]]:
    """One episode taking ``action`` wherever the mask allows it, else keeping the unit at width 1.0."""
    keep = len(env.unwrapped.task.width_choices)  # the action "keep at width 1.0"
    env.reset()
    while True:
        mask = env.unwrapped.action_masks()
        if isinstance(env.action_space, gym.spaces.MultiDiscrete):  # one step, one choice per decision
            masks = np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
            step: Any = np.array([action if m[action] else keep for m in masks])
        else:
            step = action if mask[action] else keep
        _, reward, terminated, truncated, info = env.step(step)
        if terminated or truncated:
            return float(reward), info


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """Play the uniform widths in increasing order until ``log.episodes >= episodes`` or no width is left.

    The checkpoint (JSON) holds the number of widths played; ``seed`` only seeds the env's reset.
    """
    make_hyperparams(Hyperparams, hyperparams)
    if init_from is not None:
        raise ValueError("the uniform reference has no controller to initialise from a checkpoint (init_from)")
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = json.loads(Path(checkpoint).read_text())
        if state.get("agent") != "uniform":
            raise ValueError(f"{checkpoint} is not a uniform-reference checkpoint")
        log.episodes = state["episodes"]
    env = env_fn()
    try:
        env.reset(seed=seed)
        actions = width_actions(env)
        while log.episodes < min(episodes, len(actions)):
            reward, info = uniform_episode(env, actions[log.episodes])
            log.record(reward, info)
            if checkpoint is not None:
                atomic_write_text(checkpoint, json.dumps({"agent": "uniform", "episodes": log.episodes}))
    finally:
        env.close()
