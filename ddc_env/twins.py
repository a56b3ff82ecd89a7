"""Benchmark twins of the live envs (``DDC-Bench-*``): the same env, scored from a table or a surrogate that ships in
the package instead of training students, so thousands of episodes cost seconds and need no data, teacher file,
training or network.

Example::

    env = gym.make("DDC-Bench-LeNet5-MNIST-v0")          # every student of DDC-LeNet5-MNIST, as measured live
    obs, info = env.reset(seed=0)
    ...
    info["val_acc"], info["simulated_seconds"]            # what the live evaluation took
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .env_config import BEHAVIOUR, REMOVE_BELOW, check_behaviour
from .episode import CompressionEnv
from .rewards import RewardFn, make_env_reward
from .scoring import CachedScorer, Scorer
from .scoring.surrogate import SurrogateScorer
from .scoring.table import TRAIN_SEEDS, TableScorer
from .tables import BenchTable
from .validate import check_choice, check_names

__all__ = ["BACKENDS", "BenchConfig", "DDCBenchEnv", "make_bench_config", "make_twin_scorer"]

BACKENDS = ("table", "surrogate")


@dataclass(frozen=True)
class BenchConfig:
    """Every argument of :class:`DDCBenchEnv` (see its docstring)."""

    table: str = "lenet5_mnist"
    backend: str = "table"
    fidelity: str | None = None
    train_seed: int | str | None = None
    device: str | None = None
    reward: str | Mapping[str, Any] | RewardFn = "calibrated"
    action_mode: str = "sequential"
    stages: str = "two_stage"
    masked_action: str = "nearest"
    seed: int | None = None
    render_mode: str | None = None
    budget: Mapping[str, float] | None = None
    remove_below: float = REMOVE_BELOW

    def __post_init__(self) -> None:
        check_choice(self.backend, "backend", BACKENDS)
        check_behaviour(**{name: getattr(self, name) for name in BEHAVIOUR if name != "reward"})
        table = BenchTable.load(self.table)
        if self.fidelity is not None:
            table.check_fidelity(self.fidelity)
        if self.device is not None:
            table.latency_model(self.device)  # a TableError naming the devices the table has
        if self.backend == "surrogate" and self.train_seed is not None:
            raise ValueError("train_seed picks a row of a table; the surrogate predicts one value per student")
        if self.train_seed is not None and self.train_seed not in TRAIN_SEEDS and (
                isinstance(self.train_seed, bool) or not isinstance(self.train_seed, int)):
            raise ValueError(f"train_seed must be a seed of the table, 'random' or 'mean', got {self.train_seed!r}")
        make_env_reward(self.reward, "latency")


def make_bench_config(config: BenchConfig | None = None, **overrides: Any) -> BenchConfig:
    """``config`` with ``overrides``; unknown names raise a ValueError listing the allowed ones."""
    check_names(overrides, [f.name for f in dataclasses.fields(BenchConfig)], "DDCBenchEnv argument(s)")
    return dataclasses.replace(config or BenchConfig(), **overrides)


def make_twin_scorer(config: BenchConfig) -> Scorer:
    """The scorer of a twin: its table or surrogate, behind an in-memory cache (a repeated student is a cache hit
    costing no simulated time, as in a live search with a results store)."""
    table = BenchTable.load(config.table)
    inner: Scorer = (TableScorer(table, config.fidelity, train_seed=config.train_seed, device=config.device)
                     if config.backend == "table" else SurrogateScorer(table, config.fidelity, device=config.device))
    return CachedScorer(inner)


class DDCBenchEnv(CompressionEnv):
    """The benchmark twin of a live DDC env: same action and observation spaces, masks, rewards and ``info`` keys,
    with students scored from a shipped benchmark table (``backend="table"``: every student of the space, as the
    live scorer measured it) or its surrogate (``backend="surrogate"``: a model fit on the table predicts any
    student's validation accuracy; params and FLOPs exact, time from the table's latency table).

    ## Arguments

    - ``table``: a shipped table's name (``ddc_env.tables.TABLES_DIR``) or a table file built by ``ddc table build``.
    - ``backend``: "table" or "surrogate"; ``fidelity``: one of the table's fidelities (default: its first).
    - ``device``: whose unit latency table times the students (default: the one the rows were built with,
      ``"build"``; others are added to a table file by ``ddc table latency``): like HW-NAS-Bench's devices, the
      accuracies stay, the time ratios (and so the rewards) are that CPU's.
    - ``train_seed`` (table only): which training seed's row a student gets: a seed of the table (default: the
      first, what the live env at that fidelity gives), "random" (drawn per new student from the env's
      ``np_random``: NATS-Bench's ``is_random``) or "mean".
    - ``reward``, ``action_mode``, ``stages``, ``masked_action``, ``seed``, ``render_mode``, ``budget``,
      ``remove_below``: as :class:`~ddc_env.env.DDCEnv`.

    ``info`` adds ``simulated_seconds``: what the live evaluation took (0.0 for a repeated student, a cache hit as
    in a live search), so a search budget can be counted in evaluations or in simulated time; ``train_seed`` (table:
    the row's seed, -1 for "mean").

    ## Version History

    - v0: initial version.
    """

    def __init__(self, config: BenchConfig | None = None, **overrides: Any) -> None:
        self.config = cfg = make_bench_config(config, **overrides)
        super().__init__(make_twin_scorer(cfg), **{name: getattr(cfg, name) for name in BEHAVIOUR})

    @staticmethod
    def make_config(**kwargs: Any) -> BenchConfig:
        """The checked config of these arguments (what :func:`ddc_env.registration.env_config` asks for)."""
        return make_bench_config(**kwargs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        out = super().reset(seed=seed, options=options)
        inner = self.scorer.inner
        if isinstance(inner, TableScorer):
            inner.rng = self.np_random  # train_seed="random" draws from the env's seeded generator
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])
