"""Recurrent controllers and the machinery the custom agents share: masked sampling, the decision a step is
about, a moving-average baseline, seeded construction and controller checkpoints.

Every controller is sized by the observation's 17 features and the env's action count only, never by the
number of decisions, so a controller trained on one teacher loads on a deeper or shallower one (N2N / DDC
policy transfer) as long as the action space is the same (same ``width_choices`` and ``kernel_shrink``).
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ddc_env.env import FEATURES, OBS_DIM

from .common import load_checkpoint, save_checkpoint

POSITION = FEATURES.index("position")  # index of the decision / (n_decisions - 1)
PASS = FEATURES.index("pass")  # 0 removal pass (or joint), 1 shrink pass

LSTMState = tuple[torch.Tensor, torch.Tensor]
M = TypeVar("M", bound=nn.Module)


# -- acting -----------------------------------------------------------------------------------------------
def check_sequential(env: gym.Env) -> int:
    """The action count of a sequential-mode env; a ValueError for anything else (one-shot mode)."""
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"the recurrent controllers act one decision per step: they need a Discrete action "
                         f"space (action_mode='sequential'), got {env.action_space}")
    return int(env.action_space.n)


def decision_index(obs: np.ndarray, n_decisions: int) -> int:
    """Which decision (row of the layer table) the observation describes, from its position feature."""
    return round(float(obs[POSITION]) * (n_decisions - 1))


def is_shrink_pass(obs: np.ndarray) -> bool:
    """Whether the observation belongs to the shrink pass of a two-stage episode."""
    return bool(obs[PASS] > 0.5)


def step_input(obs: np.ndarray, prev_action: int | None, n_actions: int) -> torch.Tensor:
    """(1, obs_dim + n_actions): the observation and the one-hot previous action (zeros at the first step)."""
    prev = torch.zeros(n_actions)
    if prev_action is not None:
        prev[prev_action] = 1.0
    return torch.cat([torch.as_tensor(obs, dtype=torch.float32), prev]).unsqueeze(0)


def sample_masked(logits: torch.Tensor, mask: np.ndarray | torch.Tensor, generator: torch.Generator
                  ) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Sample one allowed action from ``logits`` (forbidden ones get -inf); returns the action, its log
    probability and the entropy of the masked distribution (both 0 when a single action is allowed)."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    logp = F.log_softmax(logits.masked_fill(~mask, -math.inf), dim=-1)
    probs = logp.exp()
    action = int(torch.multinomial(probs.detach(), 1, generator=generator))
    entropy = -(probs * logp.masked_fill(~mask, 0.0)).sum()
    return action, logp[action], entropy


@dataclass
class MovingAverageBaseline:
    """N2N's baseline: an exponential moving average of the iterations' mean rewards (the first iteration
    is its own baseline)."""

    decay: float
    value: float | None = None

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """``rewards`` minus the baseline (before this batch updates it)."""
        return rewards - (rewards.mean() if self.value is None else self.value)

    def update(self, rewards: torch.Tensor) -> None:
        mean = float(rewards.mean())
        self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean


# -- networks ---------------------------------------------------------------------------------------------
class RemovalPolicy(nn.Module):
    """N2N's removal policy: a bidirectional LSTM reads every decision's features and emits (remove, keep)
    logits for each decision."""

    def __init__(self, hidden: int = 30, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(OBS_DIM, hidden, num_layers=layers, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(n_decisions, 17) layer features -> (n_decisions, 2) logits of (remove, keep)."""
        out, _ = self.lstm(features.unsqueeze(1))
        return self.head(out.squeeze(1))


class ShrinkPolicy(nn.Module):
    """N2N's shrink policy: an autoregressive LSTM; each step reads the current decision's observation and the
    previous width action, and emits logits over every action (the env's mask keeps the widths)."""

    def __init__(self, n_actions: int, hidden: int = 30, layers: int = 2) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.lstm = nn.LSTM(OBS_DIM + n_actions, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, n_actions)

    def step(self, obs: np.ndarray, prev_action: int | None, state: LSTMState | None
             ) -> tuple[torch.Tensor, LSTMState]:
        out, state = self.lstm(step_input(obs, prev_action, self.n_actions), state)
        return self.head(out[0]), state


class RecurrentActorCritic(nn.Module):
    """An LSTM over the episode's observations and previous actions, with a policy head (action logits) and
    a value head (expected terminal reward from this step)."""

    def __init__(self, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.cell = nn.LSTMCell(OBS_DIM + n_actions, hidden)
        self.policy = nn.Linear(hidden, n_actions)
        self.value = nn.Linear(hidden, 1)

    def step(self, obs: np.ndarray, prev_action: int | None, state: LSTMState | None
             ) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        """Logits (n_actions,), value (), new state."""
        h, c = self.cell(step_input(obs, prev_action, self.n_actions), state)
        return self.policy(h[0]), self.value(h[0])[0], (h, c)


class EncoderDecoder(nn.Module):
    """A bidirectional LSTM encodes the whole layer table; an LSTM decoder emits one action per step from the
    observation, the previous action and the encoder state of the decision the step is about (indexed by the
    observation's position feature)."""

    def __init__(self, n_actions: int, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.encoder = nn.LSTM(OBS_DIM, hidden, num_layers=layers, bidirectional=True)
        self.decoder = nn.LSTMCell(OBS_DIM + n_actions + 2 * hidden, hidden)
        self.head = nn.Linear(3 * hidden, n_actions)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """(n_decisions, 17) layer features -> (n_decisions, 2 * hidden) encoder states."""
        out, _ = self.encoder(features.unsqueeze(1))
        return out.squeeze(1)

    def step(self, memory: torch.Tensor, obs: np.ndarray, prev_action: int | None, state: LSTMState | None
             ) -> tuple[torch.Tensor, LSTMState]:
        """Logits (n_actions,) and new decoder state for the step observing ``obs``."""
        context = memory[decision_index(obs, len(memory))].unsqueeze(0)
        h, c = self.decoder(torch.cat([step_input(obs, prev_action, self.n_actions), context], dim=1), state)
        return self.head(torch.cat([h, context], dim=1))[0], (h, c)


def seeded(seed: int, factory: Callable[[], M]) -> M:
    """``factory()`` with torch's global RNG seeded by ``seed`` for the call only (reproducible initial
    weights without touching the caller's RNG state)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


# -- checkpoints ------------------------------------------------------------------------------------------
def save_agent(path: str | os.PathLike[str], *, agent: str, n_actions: int, controller: nn.Module,
               optimizers: Mapping[str, torch.optim.Optimizer], generator: torch.Generator,
               **extra: Any) -> None:
    """Atomically write an agent's full state: controller, optimizers, sampling RNG and ``extra`` plain values
    (iteration, episodes, baseline...)."""
    save_checkpoint(path, {"agent": agent, "obs_dim": OBS_DIM, "n_actions": n_actions,
                           "controller": controller.state_dict(),
                           "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
                           "generator": generator.get_state(), **extra})


def load_controller(path: str | os.PathLike[str], *, agent: str, n_actions: int, controller: nn.Module
                    ) -> dict[str, Any]:
    """Load the controller weights of an ``agent`` checkpoint into ``controller`` (policy transfer when the
    checkpoint comes from another env); returns the whole checkpoint. A ValueError when it does not fit."""
    state = load_checkpoint(path)
    if state.get("agent") != agent:
        raise ValueError(f"{path} is a {state.get('agent')!r} checkpoint, not a {agent!r} one")
    if (state["obs_dim"], state["n_actions"]) != (OBS_DIM, n_actions):
        raise ValueError(f"{path} holds a controller for {state['obs_dim']} features and {state['n_actions']} "
                         f"actions; this env has {OBS_DIM} and {n_actions} (same width_choices and kernel_shrink "
                         f"needed)")
    try:
        controller.load_state_dict(state["controller"])
    except RuntimeError as e:
        raise ValueError(f"the controller in {path} does not fit this agent's hyperparameters "
                         f"(hidden size?): {e}") from None
    return state


def saved_episodes(path: str | os.PathLike[str]) -> int:
    """Episodes recorded when the agent checkpoint ``path`` was saved: the ``start_episode`` of the log of a
    resumed search (``run(resume=True)`` also sets ``log.episodes`` to it)."""
    return int(load_checkpoint(path)["episodes"])


def load_agent(path: str | os.PathLike[str], *, agent: str, n_actions: int, controller: nn.Module,
               optimizers: Mapping[str, torch.optim.Optimizer], generator: torch.Generator) -> dict[str, Any]:
    """Restore everything :func:`save_agent` wrote; returns the checkpoint for the agent's ``extra`` values."""
    state = load_controller(path, agent=agent, n_actions=n_actions, controller=controller)
    for key, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][key])
    generator.set_state(state["generator"])
    return state
