"""The random-search reference of a benchmark: which students a masked random episode produces and with what
probability, the expected best reward of ``k`` such episodes (the 0 of the normalized score) and the best reward
there is (its 1).

The random agent draws every step uniformly from the actions ``action_masks()`` allows, so in a two-stage episode
a student reached through fewer steps (e.g. with a unit removed, which skips its width) is more likely than one
reached through more: the reference is the distribution over students of a random *episode*, not the uniform one
over students. How it is obtained:

- ``"exact"`` (a tabular twin with a fixed training seed or their mean): every random episode is enumerated through
  the env itself (reset, step, action_masks), each with its probability;
- ``"sampled"`` (a surrogate twin, training seeds drawn at random, or ``action_mode="continuous"``, where the random
  agent draws uniform keep ratios: AMC's random search): many random episodes played on a fresh env;
- ``"runs"`` (a live env, where every episode trains a student): the random agent's own episodes in the benchmark.

The expected best of ``k`` independent episodes drawn from a distribution with sorted rewards ``r_i`` and
cumulative probabilities ``F_i`` is ``sum_i r_i (F_i^k - F_{i-1}^k)``, exact for the first two methods' distributions.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ...agents.random_search import random_episode
from ...scoring.table import TableScorer
from ...tables import best_known_key
from ...twins import DDCBenchEnv

__all__ = ["EXACT_LIMIT", "Outcome", "Reference", "best_known", "make_reference", "reference_from_episodes",
           "table_best"]

EXACT_LIMIT = 200_000  # random episodes enumerated at most for an exact reference (then: sampled)


@dataclass(frozen=True)
class Outcome:
    """One student a random episode can end on: its reward, probability and live evaluation seconds."""

    spec_hash: str
    reward: float
    probability: float
    seconds: float


@dataclass(frozen=True)
class Reference:
    """The distribution of a random episode's reward (see the module docstring) and the best reward there is.

    ``best`` is None when it is not known in advance (surrogate twins, live envs): the benchmark then takes the best
    reward any of its runs found."""

    method: str
    outcomes: tuple[Outcome, ...]
    episodes: int  # enumerated (exact) or played (sampled, runs) random episodes
    best: float | None
    best_source: str

    def __post_init__(self) -> None:
        if not self.outcomes:
            raise ValueError("a random-search reference needs at least one episode")

    def expected_best(self, k: int) -> float:
        """The expected best reward of ``k`` independent random episodes."""
        rewards = np.array([o.reward for o in self.outcomes])
        probabilities = np.array([o.probability for o in self.outcomes])
        order = np.argsort(rewards, kind="stable")
        cdf = np.minimum(np.cumsum(probabilities[order]) / probabilities.sum(), 1.0)
        mass = cdf ** k - np.concatenate([[0.0], cdf[:-1]]) ** k
        return float((rewards[order] * mass).sum())

    def expected_best_within(self, k: int, seconds: float, *, trials: int = 4000, seed: int = 0) -> float:
        """The expected best reward of random search stopped after ``k`` episodes or before the episode that would
        take its simulated seconds past ``seconds`` (a repeated student costs nothing, as in a search), by
        simulating ``trials`` searches from the distribution; searches that can afford no episode are left out."""
        rng = np.random.default_rng(seed)
        probabilities = np.array([o.probability for o in self.outcomes])
        draws = rng.choice(len(self.outcomes), size=(trials, k), p=probabilities / probabilities.sum())
        bests = []
        for row in draws:
            spent, best, seen = 0.0, -math.inf, set()
            for i in row:
                cost = 0.0 if i in seen else self.outcomes[i].seconds
                if spent + cost > seconds:
                    break
                spent, best = spent + cost, max(best, self.outcomes[i].reward)
                seen.add(i)
            if math.isfinite(best):
                bests.append(best)
        if not bests:
            raise ValueError(f"no random search affords a single episode within {seconds:g} simulated seconds")
        return float(np.mean(bests))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``reference.json``), the outcomes best first."""
        outcomes = sorted(self.outcomes, key=lambda o: -o.reward)
        return {"method": self.method, "episodes": self.episodes, "best": self.best, "best_source": self.best_source,
                "students": len(outcomes), "outcomes": [[o.spec_hash, o.reward, o.probability, o.seconds]
                                                        for o in outcomes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(data["method"], tuple(Outcome(*row) for row in data["outcomes"]), data["episodes"], data["best"],
                   data["best_source"])


def _outcomes(samples: Iterable[tuple[str, float, float, float]]) -> tuple[Outcome, ...]:
    """(spec hash, reward, probability, seconds) samples merged per student (probabilities added)."""
    merged: dict[str, list[Any]] = {}
    for spec_hash, reward, probability, seconds in samples:
        if spec_hash in merged:
            merged[spec_hash][2] += probability
        else:
            merged[spec_hash] = [spec_hash, reward, probability, seconds]
    return tuple(Outcome(*row) for row in merged.values())


def _sample(info: Mapping[str, Any], reward: float, probability: float) -> tuple[str, float, float, float]:
    return (str(info.get("spec_hash") or info.get("status")), float(reward), probability,
            float(info.get("eval_seconds") or 0.0))


def _allowed(env: gym.Env) -> list[Any]:
    """Every action the random agent may take at this step, each equally likely (one-shot: every combination of
    the decisions' allowed choices)."""
    mask = env.unwrapped.action_masks()
    if isinstance(env.action_space, gym.spaces.MultiDiscrete):
        masks = np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
        return [np.array(combo) for combo in itertools.product(*(np.flatnonzero(m).tolist() for m in masks))]
    return np.flatnonzero(mask).tolist()


def _replay(env: gym.Env, prefix: Sequence[Any]) -> None:
    env.reset()
    for action in prefix:
        env.step(action)


def enumerate_episodes(env: gym.Env, limit: int = EXACT_LIMIT) -> tuple[tuple[Outcome, ...], int] | None:
    """Every masked random episode of ``env`` with its probability (a depth-first walk that replays each action
    prefix through the env), merged per student, and the number of episodes; None beyond ``limit`` episodes."""
    samples, leaves = [], 0
    stack: list[tuple[tuple[Any, ...], float]] = [((), 1.0)]
    while stack:
        prefix, probability = stack.pop()
        _replay(env, prefix)
        actions = _allowed(env)
        for i, action in enumerate(actions):
            if i:
                _replay(env, prefix)
            _, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                leaves += 1
                if leaves > limit:
                    return None
                samples.append(_sample(info, reward, probability / len(actions)))
            else:
                stack.append(((*prefix, action), probability / len(actions)))
    return _outcomes(samples), leaves


def table_best(env: gym.Env) -> float:
    """The best reward of any student of a tabular twin's table that meets the twin's budget, if it has one (at its
    fidelity; with training seeds drawn at random, the best of any seed's row)."""
    twin = env.unwrapped
    scorer: TableScorer = twin.scorer.inner
    table, fidelity = scorer.table, scorer.fidelity
    seeds = table.seeds(fidelity) if scorer.train_seed == "random" else [scorer.train_seed]
    reward = twin.reward_function()
    scorers = [TableScorer(table, fidelity, train_seed=seed) for seed in seeds]
    specs = [spec for spec in map(table.spec, table.spec_hashes(fidelity)) if twin.meets_budget(spec)]
    return max(float(reward(s.evaluate(spec))) for spec in specs for s in scorers)


def best_known(env: gym.Env) -> tuple[float | None, str]:
    """The reward of the best-known student stored with a surrogate twin's table (``ddc_env.tables.best_known_key``;
    found by a long search, ``bench/best_known.py``), so that normalized scores compare across papers; (None, "the
    best reward any run found") when the table has none."""
    twin = env.unwrapped
    table = twin.scorer.inner.table
    stored = table.meta.get("best_known", {}).get(best_known_key(twin.config, table))
    if stored is None:
        return None, "the best reward any run found"
    record = twin.evaluate_choices(twin.task.codec.decode(stored["choice_tokens"]))
    return float(record["reward"]), f"the best-known student ({stored['evaluations']:,} evaluations: {stored['command']})"


def _is_table(env: gym.Env) -> bool:
    return isinstance(env.unwrapped, DDCBenchEnv) and env.unwrapped.config.backend == "table"


def make_reference(env: gym.Env, *, samples: int = 20_000, seed: int = 0,
                   limit: int = EXACT_LIMIT) -> Reference:
    """The reference of a twin ``env`` (fresh, made for this): exact when it is tabular with deterministic rows and
    discrete actions and has at most ``limit`` random episodes (bounded by the product of every decision's allowed
    actions), else ``samples`` random episodes played with ``seed``."""
    if not isinstance(env.unwrapped, DDCBenchEnv):
        raise ValueError("make_reference plays random episodes on a benchmark twin; a live env's reference comes "
                         "from the random agent's runs (reference_from_episodes)")
    env.reset(seed=seed)
    tabular = _is_table(env)
    best, best_source = (table_best(env), "the best student of the table") if tabular else best_known(env)
    task = env.unwrapped.task
    episodes_at_most = math.prod(sum(task.allowed(d)) for d in task.decisions)
    discrete = not isinstance(env.action_space, gym.spaces.Box)
    if tabular and discrete and env.unwrapped.config.train_seed != "random" and episodes_at_most <= limit:
        enumerated = enumerate_episodes(env, limit)
        if enumerated is not None:
            return Reference("exact", enumerated[0], enumerated[1], best, best_source)
    rng = np.random.default_rng(seed)
    played = []
    for _ in range(samples):
        reward, info = random_episode(env, rng)
        played.append(_sample(info, reward, 1.0 / samples))
    return Reference("sampled", _outcomes(played), samples, best, best_source)


def reference_from_episodes(episodes: Sequence[Mapping[str, Any]]) -> Reference:
    """The reference of a live env: the random agent's episodes of the benchmark (lines with ``reward``,
    ``spec_hash``, ``eval_seconds``), each equally likely."""
    n = len(episodes)
    return Reference("runs", _outcomes(_sample(e, e["reward"], 1.0 / n) for e in episodes), n, None,
                     "the best reward any run found")
