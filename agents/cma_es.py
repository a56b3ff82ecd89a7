"""CMA-ES with margin (Hamano et al. 2022, the ``cmaes`` package's ``CMAwM``) on an integer relaxation of the decision
space.

Every gene of the decision space (:class:`~ddc_env.agents.common.DecisionSpace`) is one integer coordinate: a binary
one for "remove this unit", and for the width of a unit the position of its action among the actions keeping it,
narrowest to widest, an ordinal scale. CMA-ES samples a generation of ``population_size`` points (None: its default
4 + floor(3 ln n) for n coordinates) around a mean that starts at the middle of every range, with an initial step
``sigma0`` times the widest range; the margin keeps every integer coordinate from freezing. Each point is played as an
episode, and the generation's terminal rewards update the distribution.

CMA-ES is deterministic given its seed and the rewards it is told, so the JSON checkpoint holds the played genomes and
their rewards, and a resumed run replays them into a fresh optimizer (no env step), checking that it proposes them
again.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cmaes
import gymnasium as gym
import numpy as np

from ddc_env.validate import check_int, check_number

from .common import DecisionSpace, EpisodeLog, Genome, make_hyperparams, run_blackbox
from .common import saved_blackbox_episodes as saved_episodes  # noqa: F401  (``ddc search --resume`` reads it)

AGENT = "cma_es"


@dataclass(frozen=True)
class Hyperparams:
    """CMA-ES hyperparameters."""

    sigma0: float = 0.35  # initial step size, as a fraction of the widest coordinate's range
    population_size: int | None = None  # points per generation (None: 4 + floor(3 ln n), n coordinates)

    def __post_init__(self) -> None:
        check_number(self.sigma0, "sigma0", minimum=0.0, exclusive_minimum=True)
        check_int(self.population_size, "population_size", minimum=2, optional=True)


class CMAES:
    """CMA-ES with margin over the genes' values."""

    def __init__(self, space: DecisionSpace, hp: Hyperparams, seed: int) -> None:
        if not space.genes:
            raise ValueError("CMA-ES needs a decision with a choice; every decision of this env has one action")
        bounds = np.array([[0.0, gene.size - 1.0] for gene in space.genes])
        self.optimizer = cmaes.CMAwM(mean=bounds.mean(axis=1), sigma=hp.sigma0 * float(bounds[:, 1].max()),
                                     bounds=bounds, steps=np.ones(len(bounds)), seed=seed,
                                     population_size=hp.population_size)
        self.asked: list[np.ndarray] = []  # the coordinates to tell of the points asked and not told yet
        self.told: list[tuple[np.ndarray, float]] = []  # the current generation's points told so far
        self.history: list[tuple[Genome, float]] = []

    def propose(self) -> Genome:
        x_eval, x_tell = self.optimizer.ask()
        self.asked.append(x_tell)
        return tuple(int(round(x)) for x in x_eval)

    def observe(self, genome: Genome, reward: float) -> None:
        self.history.append((genome, reward))
        self.told.append((self.asked.pop(0), -reward))  # cmaes minimises
        if len(self.told) == self.optimizer.population_size:
            self.optimizer.tell(self.told)
            self.told = []

    def state(self) -> dict[str, Any]:
        return {"history": [[list(genome), reward] for genome, reward in self.history]}

    def restore(self, state: dict[str, Any]) -> None:
        for genome, reward in state["history"]:
            proposed = self.propose()
            if list(proposed) != genome:
                raise ValueError(f"the checkpoint's genome {genome} is not what CMA-ES proposes again "
                                 f"({list(proposed)}): another cmaes version?")
            self.observe(proposed, reward)


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """CMA-ES until ``log.episodes >= episodes`` (the agent contract, see
    :func:`~ddc_env.agents.common.run_blackbox`)."""
    hp = make_hyperparams(Hyperparams, hyperparams)
    run_blackbox(AGENT, hp, CMAES, env_fn, episodes=episodes, log=log, seed=seed, checkpoint=checkpoint,
                 resume=resume, init_from=init_from)
