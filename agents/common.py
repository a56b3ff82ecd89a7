"""Machinery every agent shares: the log protocol agents report episodes to, concurrent play of a batch of
independent episodes, the layer-table features controllers read, hyperparameter parsing and atomic agent checkpoints.
Agents act through the Gymnasium API only."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import numpy as np
import torch

from ddc_env.paths import atomic_writer
from ddc_env.validate import check_int, check_names, check_number


class EpisodeLog(Protocol):
    """What an agent reports to (e.g. :class:`ddc_env.lab.runs.SearchLog`): every finished episode, its own
    scalars, and the episode count it stops at."""

    episodes: int
    best_reward: float

    def record(self, reward: float, info: Mapping[str, Any]) -> None: ...

    def scalar(self, name: str, value: float, step: int | None = None) -> None: ...


E = TypeVar("E")


def play_episodes(env: gym.Env, n: int, play: Callable[[gym.Env], E], *, concurrent: bool | None = None
                  ) -> list[E]:
    """``n`` episodes of ``play(env)`` (one whole episode per call, returning a dataclass with ``reward`` and
    ``info`` fields), in order, with the students of all ``n`` scored concurrently when the env's scorer is a
    parallel backend (``concurrent=None``: ask ``env.unwrapped.scorer``).

    Concurrent play: each episode is played up to its last step, whose student is handed to the scorer at once
    (``env.unwrapped.prefetch``) instead of being waited for; then the episodes are replayed in order, each
    terminal step taking its prefetched record. Students, actions, rewards and infos are exactly those of playing
    the episodes one after another, so ``play`` must not act on the terminal reward or info (they are filled in
    afterwards) and must draw its randomness from its own generator, not from the env."""
    concurrent = getattr(getattr(env.unwrapped, "scorer", None), "concurrent", False) if concurrent is None else (
        concurrent)
    if not concurrent or n < 2:
        return [play(env) for _ in range(n)]
    planner = _Planner(env)
    planned = [play(planner) for _ in range(n)]
    played = []
    for episode, actions in zip(planned, planner.actions):
        env.reset()
        for action in actions:
            _, reward, terminated, truncated, info = env.step(action)
        if not (terminated or truncated):
            raise RuntimeError("a replayed episode did not end on its last action: the env is not deterministic "
                               "given the actions")
        played.append(dataclasses.replace(episode, reward=float(reward), info=info))
    return played


class _Planner(gym.Wrapper):
    """The env as :func:`play_episodes` plays it first: a step that would end the episode is not taken; its student
    is prefetched and the episode ends with a placeholder reward of 0. Every episode's actions are kept."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[list[Any]] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.actions.append([])
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.actions[-1].append(action)
        ends, choices = self.env.unwrapped.peek_step(action)
        if not ends:
            return self.env.step(action)
        if choices is not None:
            self.env.unwrapped.prefetch(choices)
        space = self.observation_space
        return np.zeros(space.shape, space.dtype), 0.0, True, False, {}


def layer_features(layer_table: list[dict[str, Any]]) -> torch.Tensor:
    """(n_decisions, features) float tensor of the normalised per-decision features from ``reset()``'s info."""
    return torch.tensor(np.array([row["features"] for row in layer_table], dtype=np.float32))


H = TypeVar("H")


def make_hyperparams(cls: type[H], overrides: Mapping[str, Any]) -> H:
    """The dataclass ``cls`` (an agent's ``Hyperparams``) with ``overrides``; an unknown name raises a
    ValueError listing the allowed ones."""
    check_names(overrides, [f.name for f in dataclasses.fields(cls)], "hyperparameter(s)")
    return cls(**overrides)


# the hyperparameter names the controllers share, by what they allow
_POSITIVE_INTS = ("rollouts", "hidden")
_POSITIVE = ("lr", "removal_lr", "shrink_lr", "max_grad_norm")
_NON_NEGATIVE = ("entropy_coef", "value_coef")


def check_shared_hyperparams(hp: Any) -> None:
    """Check the fields of an agent's ``Hyperparams`` that every controller names alike: ``rollouts`` and ``hidden``
    positive integers, learning rates and ``max_grad_norm`` finite and > 0, ``entropy_coef`` and ``value_coef``
    finite and >= 0, ``baseline_decay`` in [0, 1)."""
    for f in dataclasses.fields(hp):
        value = getattr(hp, f.name)
        if f.name in _POSITIVE_INTS:
            check_int(value, f.name, minimum=1)
        elif f.name in _POSITIVE:
            check_number(value, f.name, minimum=0.0, exclusive_minimum=True)
        elif f.name in _NON_NEGATIVE:
            check_number(value, f.name, minimum=0.0)
        elif f.name == "baseline_decay":
            check_number(value, f.name, minimum=0.0, maximum=1.0, exclusive_maximum=True)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write an agent's state (tensors, state dicts, plain Python values) atomically with ``torch.save``."""
    with atomic_writer(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An agent state written by :func:`save_checkpoint` (loaded on the CPU, tensors and plain values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)
