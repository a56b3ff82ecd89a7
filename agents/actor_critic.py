"""Recurrent actor-critic: one LSTM reads the episode's observations and previous actions step by step, with
a policy head (masked action logits) and a value head (the terminal reward it expects from this step).

The reward comes only at the end of an episode, so every step's return is the terminal reward ``R``; the
advantage of a step is ``R - V(step)``. One iteration plays ``rollouts`` episodes (scored concurrently on a parallel
scorer: :func:`~ddc_env.agents.common.play_episodes`), then takes one gradient
step on ``-A * log pi + value_coef * (R - V)^2 - entropy_coef * H``, averaged over the batch's episodes
(summed over their steps), with gradient-norm clipping.

It acts on whatever the env asks at each step (``action_masks()``), so it runs in both stage modes
(``stages="two_stage"``: removal pass then shrink pass; ``"joint"``: one step per decision with all options).
The controller is sized by the 17 features and the action count only, so ``init_from`` transfers it to a
teacher of another depth.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from .common import EpisodeLog, check_shared_hyperparams, make_hyperparams, play_episodes
from .controllers import (RecurrentActorCritic, check_sequential, load_agent, load_controller, sample_masked,
                          save_agent, seeded)
from .controllers import saved_episodes  # noqa: F401  (``ddc search --resume`` starts its log from it)

AGENT = "actor_critic"


@dataclass
class Hyperparams:
    """Actor-critic hyperparameters."""

    rollouts: int = 5  # episodes per gradient step
    hidden: int = 64  # LSTM hidden size
    lr: float = 0.01  # Adam
    value_coef: float = 0.5  # weight of the value loss
    entropy_coef: float = 0.01  # entropy bonus per sampled step
    max_grad_norm: float = 1.0  # gradient-norm clipping

    def __post_init__(self) -> None:
        check_shared_hyperparams(self)


@dataclass
class Episode:
    reward: float
    info: dict[str, Any]
    log_probs: torch.Tensor  # (steps,)
    values: torch.Tensor  # (steps,)
    entropies: torch.Tensor  # (steps,)


def make_controller(n_actions: int, hp: Hyperparams) -> RecurrentActorCritic:
    """The actor-critic network (what a checkpoint holds)."""
    return RecurrentActorCritic(n_actions, hp.hidden)


def rollout(env: gym.Env, net: RecurrentActorCritic, generator: torch.Generator) -> Episode:
    """Play one episode, sampling every step from the masked policy."""
    obs, _ = env.reset()
    log_probs, values, entropies = [], [], []
    prev, state = None, None
    while True:
        logits, value, state = net.step(obs, prev, state)
        prev, log_prob, entropy = sample_masked(logits, env.unwrapped.action_masks(), generator)
        log_probs.append(log_prob)
        values.append(value)
        entropies.append(entropy)
        obs, reward, terminated, truncated, info = env.step(prev)
        if terminated or truncated:
            return Episode(float(reward), info, torch.stack(log_probs), torch.stack(values), torch.stack(entropies))


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """Search with the recurrent actor-critic until ``log.episodes >= episodes``; the full agent state goes to
    ``checkpoint`` after every iteration, ``resume`` continues from it, ``init_from`` loads another run's
    controller weights only (policy transfer)."""
    hp = make_hyperparams(Hyperparams, hyperparams)
    env = env_fn()
    try:
        env.reset(seed=seed)
        n_actions = check_sequential(env)
        net = seeded(seed, lambda: make_controller(n_actions, hp))
        optimizer = torch.optim.Adam(net.parameters(), lr=hp.lr)
        generator = torch.Generator().manual_seed(seed)
        iteration = 0
        if init_from is not None:
            load_controller(init_from, agent=AGENT, n_actions=n_actions, controller=net)
        if resume and checkpoint is not None and Path(checkpoint).exists():
            state = load_agent(checkpoint, agent=AGENT, n_actions=n_actions, controller=net,
                               optimizers={"actor_critic": optimizer}, generator=generator)
            iteration, log.episodes = state["iteration"], state["episodes"]

        while log.episodes < episodes:
            batch = play_episodes(env, min(hp.rollouts, episodes - log.episodes),
                                  lambda e: rollout(e, net, generator))
            for ep in batch:
                log.record(ep.reward, ep.info)

            policy_loss = value_loss = entropy = torch.zeros(())
            for ep in batch:
                advantages = ep.reward - ep.values.detach()
                policy_loss = policy_loss - (advantages * ep.log_probs).sum() / len(batch)
                value_loss = value_loss + ((ep.reward - ep.values) ** 2).sum() / len(batch)
                entropy = entropy + ep.entropies.sum() / len(batch)
            loss = policy_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), hp.max_grad_norm)
            optimizer.step()
            iteration += 1
            for key, value in (("policy_loss", policy_loss), ("value_loss", value_loss), ("entropy", entropy)):
                log.scalar(f"train/{key}", value.item())
            log.scalar("train/mean_reward", sum(ep.reward for ep in batch) / len(batch))
            if checkpoint is not None:
                save_agent(checkpoint, agent=AGENT, n_actions=n_actions, controller=net,
                           optimizers={"actor_critic": optimizer}, generator=generator, iteration=iteration,
                           episodes=log.episodes, hyperparams=dataclasses.asdict(hp))
    finally:
        env.close()
