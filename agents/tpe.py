"""TPE (Bergstra et al. 2011) through optuna's ``TPESampler``: one categorical parameter per gene of the decision
space (:class:`~ddc_env.agents.common.DecisionSpace`: ``<decision>/remove`` for a removable unit, ``<decision>/width``
over the positions of the actions keeping it), asked from an optuna study and told the episode's terminal reward.
The first ``n_startup_trials`` genomes are random (the students of masked random episodes); ``multivariate`` models
the parameters jointly (Falkner et al. 2018) instead of one by one.

Each proposal comes from a sampler seeded with (seed, trial number), so it depends on the finished trials and the
seed only: the JSON checkpoint holds the finished trials, and a resumed run replays them into a fresh study
(``study.add_trial``) and proposes exactly what an uninterrupted one would.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna

from ddc_env.validate import check_bool, check_int

from .common import DecisionSpace, EpisodeLog, Genome, make_hyperparams, run_blackbox
from .common import saved_blackbox_episodes as saved_episodes  # noqa: F401  (``ddc search --resume`` reads it)

AGENT = "tpe"


@dataclass(frozen=True)
class Hyperparams:
    """TPE hyperparameters."""

    n_startup_trials: int = 10  # random genomes before TPE models the rewards
    multivariate: bool = True  # one joint Parzen estimator over all parameters (False: one per parameter)

    def __post_init__(self) -> None:
        check_int(self.n_startup_trials, "n_startup_trials", minimum=0)
        check_bool(self.multivariate, "multivariate")


class TPE:
    """An optuna study over the decision space, with its finished trials as the state."""

    def __init__(self, space: DecisionSpace, hp: Hyperparams, seed: int) -> None:
        self.hp, self.seed = hp, seed
        self.params = [f"{space.names[g.decision]}/{'remove' if g.removal else 'width'}" for g in space.genes]
        self.distributions = {name: optuna.distributions.CategoricalDistribution(range(gene.size))
                              for name, gene in zip(self.params, space.genes)}
        self.study = optuna.create_study(direction="maximize", sampler=self._sampler(0))
        self.trials: list[tuple[Genome, float]] = []
        self.pending: optuna.trial.Trial | None = None

    def _sampler(self, trial: int) -> optuna.samplers.TPESampler:
        """The sampler of trial number ``trial``, seeded with (seed, trial)."""
        seed = int(np.random.SeedSequence([self.seed, trial]).generate_state(1)[0])
        with warnings.catch_warnings():  # multivariate is experimental in some optuna versions
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(n_startup_trials=self.hp.n_startup_trials,
                                              multivariate=self.hp.multivariate, seed=seed)

    def propose(self) -> Genome:
        self.study.sampler = self._sampler(len(self.trials))
        self.pending = self.study.ask(self.distributions)
        return tuple(self.pending.params[name] for name in self.params)

    def observe(self, genome: Genome, reward: float) -> None:
        self.study.tell(self.pending, reward)
        self.trials.append((genome, reward))

    def state(self) -> dict[str, Any]:
        return {"trials": [[list(genome), reward] for genome, reward in self.trials]}

    def restore(self, state: dict[str, Any]) -> None:
        for genome, reward in state["trials"]:
            self.study.add_trial(optuna.trial.create_trial(params=dict(zip(self.params, genome)),
                                                           distributions=self.distributions, value=reward))
            self.trials.append((tuple(genome), reward))


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """TPE until ``log.episodes >= episodes`` (the agent contract, see :func:`~ddc_env.agents.common.run_blackbox`);
    optuna's per-trial log lines are silenced meanwhile."""
    hp = make_hyperparams(Hyperparams, hyperparams)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        run_blackbox(AGENT, hp, TPE, env_fn, episodes=episodes, log=log, seed=seed, checkpoint=checkpoint,
                     resume=resume, init_from=init_from)
    finally:
        optuna.logging.set_verbosity(verbosity)
