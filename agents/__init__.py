"""Search agents: one module per algorithm, each with a ``run(env_fn, *, episodes, log, seed, checkpoint, resume,
init_from, **hyperparams)`` that plays episodes through the Gymnasium API until ``log.episodes >= episodes``.

``AGENTS`` maps an agent name to the module that runs it; modules are imported only when an agent is used,
so a package one agent needs (sb3-contrib for ``maskable_ppo`` / ``recurrent_ppo``, optuna for ``tpe``, cmaes for
``cma_es``) is imported only by its agents.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any


@dataclass(frozen=True)
class AgentEntry:
    """How to run one agent: ``module.run`` with the ``fixed`` keyword arguments (e.g. ``algo="ppo"``);
    ``vectorized`` agents also take ``n_envs``; ``requires`` names optional packages the agent needs;
    ``action_mode``: the env's action_mode it acts in, when it acts in one only (a benchmark makes its envs so)."""

    module: str
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    vectorized: bool = False
    requires: tuple[str, ...] = ()
    action_mode: str | None = None

    def load(self) -> ModuleType:
        """The agent's module (imported now); a missing module or dependency is a ValueError saying which."""
        missing = [name for name in self.requires if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(f"this agent needs {', '.join(missing)}, part of ddc-env's default install: pip install "
                             f"{' '.join(name.replace('_', '-') for name in missing)}")
        try:
            return importlib.import_module(self.module)
        except ImportError as e:
            raise ValueError(f"agent module {self.module} cannot be imported: {e}") from e

    def runner(self, n_envs: int = 1) -> Callable[..., None]:
        """``run`` with the fixed arguments bound; ``n_envs > 1`` only for vectorized agents."""
        if n_envs != 1 and not self.vectorized:
            raise ValueError(f"n_envs={n_envs}: only the stable-baselines3 agents "
                             f"({', '.join(n for n, e in AGENTS.items() if e.vectorized)}) run several envs")
        extra = {"n_envs": n_envs} if self.vectorized else {}
        return functools.partial(self.load().run, **self.fixed, **extra)

    def hyperparams(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The agent's hyperparameters: its module's defaults (the ``Hyperparams`` dataclass, or the sb3
        module's ``HYPERPARAMS[algo]`` table) updated with ``given``; unknown names or bad values raise a
        ValueError."""
        module = self.load()
        table = getattr(module, "HYPERPARAMS", None)
        if table is None:
            from .common import make_hyperparams

            return dataclasses.asdict(make_hyperparams(module.Hyperparams, given))
        module.check_hyperparams(self.fixed["algo"], given)
        return {**table[self.fixed["algo"]], **given}


_PKG = "ddc_env.agents."
_SB3 = _PKG + "sb3"
AGENTS: Mapping[str, AgentEntry] = MappingProxyType({
    "reinforce": AgentEntry(_PKG + "reinforce", "N2N's controllers (BiLSTM removal, LSTM shrink), REINFORCE"),
    "actor_critic": AgentEntry(_PKG + "actor_critic", "recurrent actor-critic: one LSTM with policy and value heads"),
    "encoder_decoder": AgentEntry(_PKG + "encoder_decoder", "BiLSTM encoder over the layer table, LSTM decoder, "
                                                            "REINFORCE"),
    "ppo": AgentEntry(_SB3, "stable-baselines3 PPO", {"algo": "ppo"}, vectorized=True),
    "a2c": AgentEntry(_SB3, "stable-baselines3 A2C", {"algo": "a2c"}, vectorized=True),
    "dqn": AgentEntry(_SB3, "stable-baselines3 DQN", {"algo": "dqn"}, vectorized=True, action_mode="sequential"),
    "maskable_ppo": AgentEntry(_SB3, "sb3-contrib MaskablePPO (reads action_masks())", {"algo": "maskable_ppo"},
                               vectorized=True, requires=("sb3_contrib",)),
    "recurrent_ppo": AgentEntry(_SB3, "sb3-contrib RecurrentPPO (LSTM policy)", {"algo": "recurrent_ppo"},
                                vectorized=True, requires=("sb3_contrib",)),
    "ddpg": AgentEntry(_SB3, "stable-baselines3 DDPG, AMC's settings and truncated-normal noise (action_mode "
                             "continuous)", {"algo": "ddpg"}, vectorized=True, action_mode="continuous"),
    "td3": AgentEntry(_SB3, "stable-baselines3 TD3, AMC's settings and truncated-normal noise (action_mode "
                            "continuous)", {"algo": "td3"}, vectorized=True, action_mode="continuous"),
    "sac": AgentEntry(_SB3, "stable-baselines3 SAC, AMC's settings, entropy-driven exploration (action_mode "
                            "continuous)", {"algo": "sac"}, vectorized=True, action_mode="continuous"),
    "evolution": AgentEntry(_PKG + "evolution", "regularized evolution (Real et al. 2019): tournaments, one-decision "
                                                "mutations, the oldest dies"),
    "tpe": AgentEntry(_PKG + "tpe", "optuna's TPE sampler, one categorical parameter per decision",
                      requires=("optuna",)),
    "cma_es": AgentEntry(_PKG + "cma_es", "CMA-ES with margin (cmaes) on the decisions' positions, narrowest to widest",
                         requires=("cmaes",)),
    "random": AgentEntry(_PKG + "random_search", "masked uniform random actions (the reference)"),
    "uniform": AgentEntry(_PKG + "uniform", "one episode per width below 1, the same width everywhere"),
})


def get_agent(name: str) -> AgentEntry:
    """The registry entry of ``name``; a ValueError lists the known agents."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; allowed: {', '.join(AGENTS)}")
    return AGENTS[name]


__all__ = ["AGENTS", "AgentEntry", "get_agent"]
