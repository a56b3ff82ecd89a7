"""Regularized evolution (Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search").

A member is a genome of the decision space (:class:`~ddc_env.agents.common.DecisionSpace`: whether each removable
unit goes, which width each kept one takes), played as an episode; its fitness is the terminal reward. The first
``population_size`` genomes are drawn uniformly at random (the students of masked random episodes). After that, each
episode: ``sample_size`` members drawn from the population without replacement, the best of them (the oldest on a
tie) is the parent, its child has one gene set to another value (a gene that changes the student: not the width of a
removed unit), the child joins the population and the oldest member dies (aging, not the worst: the "regularized" of
the title).

State (JSON checkpoint after every episode): the population oldest first with its rewards, and the numpy RNG state.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ddc_env.validate import check_int

from .common import DecisionSpace, EpisodeLog, Genome, make_hyperparams, run_blackbox
from .common import saved_blackbox_episodes as saved_episodes  # noqa: F401  (``ddc search --resume`` reads it)

AGENT = "evolution"


@dataclass(frozen=True)
class Hyperparams:
    """Regularized-evolution hyperparameters."""

    population_size: int = 20  # P: members alive; also the number of random genomes to start with
    sample_size: int = 5  # S: members of each tournament

    def __post_init__(self) -> None:
        check_int(self.population_size, "population_size", minimum=1)
        check_int(self.sample_size, "sample_size", minimum=1)
        if self.sample_size > self.population_size:
            raise ValueError(f"sample_size must be at most population_size ({self.population_size}), "
                             f"got {self.sample_size}")


@dataclass(frozen=True)
class Member:
    genome: Genome
    reward: float


class RegularizedEvolution:
    """The population (oldest first), its tournaments and mutations."""

    def __init__(self, space: DecisionSpace, hp: Hyperparams, seed: int) -> None:
        self.space, self.hp = space, hp
        self.rng = np.random.default_rng(seed)
        self.population: deque[Member] = deque()

    def propose(self) -> Genome:
        if len(self.population) < self.hp.population_size:
            return self.space.sample(self.rng)
        picked = self.rng.choice(len(self.population), self.hp.sample_size, replace=False)
        parent = max((self.population[i] for i in sorted(picked)), key=lambda m: m.reward)
        return self.mutate(parent.genome)

    def mutate(self, genome: Genome) -> Genome:
        """``genome`` with one of its active genes set to another value (unchanged when there is no gene)."""
        active = self.space.active(genome)
        if not active:
            return genome
        k = active[self.rng.integers(len(active))]
        child = list(genome)
        child[k] = int(self.rng.choice([v for v in range(self.space.genes[k].size) if v != genome[k]]))
        return tuple(child)

    def observe(self, genome: Genome, reward: float) -> None:
        self.population.append(Member(genome, reward))
        if len(self.population) > self.hp.population_size:
            self.population.popleft()  # aging: the oldest dies

    def state(self) -> dict[str, Any]:
        return {"population": [[list(m.genome), m.reward] for m in self.population],
                "rng": self.rng.bit_generator.state}

    def restore(self, state: dict[str, Any]) -> None:
        self.population = deque(Member(tuple(genome), reward) for genome, reward in state["population"])
        self.rng.bit_generator.state = state["rng"]


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """Regularized evolution until ``log.episodes >= episodes`` (the agent contract, see
    :func:`~ddc_env.agents.common.run_blackbox`)."""
    hp = make_hyperparams(Hyperparams, hyperparams)
    run_blackbox(AGENT, hp, RegularizedEvolution, env_fn, episodes=episodes, log=log, seed=seed,
                 checkpoint=checkpoint, resume=resume, init_from=init_from)
