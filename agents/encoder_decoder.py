"""Encoder-decoder controller trained with REINFORCE.

A bidirectional LSTM encodes the whole layer table (``info["layer_table"]`` from ``reset``), so every
decision's encoding knows the network around it. An LSTM decoder then emits one action per env step: its
input is the step's observation, its own previous action and the encoder state of the decision the step is
about (found from the observation's position feature), which the output head reads again next to the
decoder state. Masked actions get -inf logits.

One iteration plays ``rollouts`` episodes (scored concurrently on a parallel scorer:
:func:`~ddc_env.agents.common.play_episodes`), then takes one gradient step on ``-(R - b) * log pi(actions) -
entropy_coef * H`` with ``b`` a moving average of past rewards, and gradient-norm clipping.

It follows whatever the env asks at each step, so it runs in both stage modes; the controller is sized by the
17 features and the action count only, so ``init_from`` transfers it to a teacher of another depth.
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

from .common import EpisodeLog, check_shared_hyperparams, layer_features, make_hyperparams, play_episodes
from .controllers import (EncoderDecoder, MovingAverageBaseline, check_sequential, load_agent, load_controller,
                          sample_masked, save_agent, seeded)
from .controllers import saved_episodes  # noqa: F401  (``ddc search --resume`` starts its log from it)

AGENT = "encoder_decoder"


@dataclass
class Hyperparams:
    """Encoder-decoder hyperparameters."""

    rollouts: int = 5  # episodes per gradient step
    hidden: int = 32  # hidden size of the encoder (per direction) and of the decoder
    lr: float = 0.01  # Adam
    baseline_decay: float = 0.9  # moving-average baseline: b <- decay * b + (1 - decay) * mean reward
    entropy_coef: float = 0.01  # entropy bonus per sampled step
    max_grad_norm: float = 1.0  # gradient-norm clipping

    def __post_init__(self) -> None:
        check_shared_hyperparams(self)


@dataclass
class Episode:
    reward: float
    info: dict[str, Any]
    log_prob: torch.Tensor  # summed over the episode's steps
    entropy: torch.Tensor


def make_controller(n_actions: int, hp: Hyperparams) -> EncoderDecoder:
    """The encoder-decoder network (what a checkpoint holds)."""
    return EncoderDecoder(n_actions, hp.hidden)


def rollout(env: gym.Env, net: EncoderDecoder, memory: torch.Tensor, generator: torch.Generator) -> Episode:
    """Play one episode, decoding every step from the encoder states ``memory``."""
    obs, _ = env.reset()
    log_prob, entropy = torch.zeros(()), torch.zeros(())
    prev, state = None, None
    while True:
        logits, state = net.step(memory, obs, prev, state)
        prev, lp, ent = sample_masked(logits, env.unwrapped.action_masks(), generator)
        log_prob, entropy = log_prob + lp, entropy + ent
        obs, reward, terminated, truncated, info = env.step(prev)
        if terminated or truncated:
            return Episode(float(reward), info, log_prob, entropy)


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """Search with the encoder-decoder controller until ``log.episodes >= episodes``; the full agent state
    goes to ``checkpoint`` after every iteration, ``resume`` continues from it, ``init_from`` loads another
    run's controller weights only (policy transfer)."""
    hp = make_hyperparams(Hyperparams, hyperparams)
    env = env_fn()
    try:
        _, info = env.reset(seed=seed)
        n_actions = check_sequential(env)
        features = layer_features(info["layer_table"])
        net = seeded(seed, lambda: make_controller(n_actions, hp))
        optimizer = torch.optim.Adam(net.parameters(), lr=hp.lr)
        generator = torch.Generator().manual_seed(seed)
        baseline = MovingAverageBaseline(hp.baseline_decay)
        iteration = 0
        if init_from is not None:
            load_controller(init_from, agent=AGENT, n_actions=n_actions, controller=net)
        if resume and checkpoint is not None and Path(checkpoint).exists():
            state = load_agent(checkpoint, agent=AGENT, n_actions=n_actions, controller=net,
                               optimizers={"encoder_decoder": optimizer}, generator=generator)
            iteration, baseline.value, log.episodes = state["iteration"], state["baseline"], state["episodes"]

        while log.episodes < episodes:
            memory = net.encode(features)  # once per iteration: the layer table does not change
            batch = play_episodes(env, min(hp.rollouts, episodes - log.episodes),
                                  lambda e: rollout(e, net, memory, generator))
            for ep in batch:
                log.record(ep.reward, ep.info)

            rewards = torch.tensor([ep.reward for ep in batch])
            advantages = baseline.advantages(rewards)
            entropy = torch.stack([ep.entropy for ep in batch]).mean()
            loss = -(advantages * torch.stack([ep.log_prob for ep in batch])).mean() - hp.entropy_coef * entropy
            optimizer.zero_grad()
            if loss.requires_grad:  # False when every action of the batch was forced by the masks
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), hp.max_grad_norm)
                optimizer.step()
            baseline.update(rewards)
            iteration += 1
            for key, value in (("loss", loss.item()), ("baseline", baseline.value), ("entropy", entropy.item()),
                               ("mean_reward", float(rewards.mean()))):
                log.scalar(f"train/{key}", value)
            if checkpoint is not None:
                save_agent(checkpoint, agent=AGENT, n_actions=n_actions, controller=net,
                           optimizers={"encoder_decoder": optimizer}, generator=generator, iteration=iteration,
                           baseline=baseline.value, episodes=log.episodes, hyperparams=dataclasses.asdict(hp))
    finally:
        env.close()
