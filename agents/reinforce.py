"""N2N's controllers trained with REINFORCE (Ashok et al., ICLR 2018, "N2N learning").

Two policies, both sized by the 17 features and the action count only (so they transfer across teachers):

- removal policy: a 2-layer bidirectional LSTM reads the whole layer table (``info["layer_table"]`` from
  ``reset``) and gives keep / remove logits per decision; only the removable decisions are sampled.
- shrink policy: an autoregressive 2-layer LSTM; for each kept shrinkable decision it reads the observation
  and its own previous choice and picks a width.

One iteration plays ``rollouts`` episodes (N2N: 5; their students are scored concurrently on a parallel scorer, see
:func:`~ddc_env.agents.common.play_episodes`), then takes one policy-gradient step on
``-(R - b) * log pi(actions)`` with ``b`` a moving average of past rewards, an optional entropy bonus and
gradient-norm clipping. Schedules:

- ``"two_stage"`` (N2N's two policies and stages): for ``removal_iterations`` iterations both policies sample and
  train, so a removal set is judged by the shrunk students it leads to; then the removal decisions of the best
  student found are frozen and the shrink policy trains alone on them.
- ``"joint"``: both policies sample every episode and train together on the same reward.

The controllers follow the env's removal and shrink passes, so the env must run with ``stages="two_stage"``
(a joint env interleaves removal and widths in one step; use ``actor_critic`` or ``encoder_decoder`` there).
Masks are respected: forbidden actions get -inf logits.

N2N's removal stage scores students with every kept unit at width 1.0, which collapses the search; here the removal
stage's students are shrunk by the shrink policy, which trains along. N2N's learning rates are 0.003 (removal) and
0.1 (shrink); the default ``shrink_lr`` here is 0.01 (pass ``shrink_lr=0.1`` for N2N's). Both measured:
docs/results/reinforce-schedule.md.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from ddc_env.validate import check_choice, check_int

from .common import EpisodeLog, check_shared_hyperparams, layer_features, make_hyperparams, play_episodes
from .controllers import (MovingAverageBaseline, RemovalPolicy, ShrinkPolicy, check_sequential, decision_index,
                          is_shrink_pass, load_agent, load_controller, sample_masked, save_agent, seeded)
from .controllers import saved_episodes  # noqa: F401  (``ddc search --resume`` starts its log from it)

AGENT = "reinforce"
SCHEDULES = ("two_stage", "joint")


@dataclass
class Hyperparams:
    """REINFORCE hyperparameters (N2N's values where the paper gives them)."""

    rollouts: int = 5  # episodes per policy-gradient step (N2N: 5)
    schedule: str = "two_stage"  # "two_stage" (N2N) or "joint"
    removal_iterations: int | None = None  # two_stage: iterations of the removal stage (None: half the budget)
    hidden: int = 30  # LSTM hidden size of both policies (N2N: 30)
    removal_lr: float = 0.003  # Adam (N2N: 0.003)
    shrink_lr: float = 0.01  # Adam (N2N: 0.1, see the module docstring)
    baseline_decay: float = 0.9  # moving-average baseline: b <- decay * b + (1 - decay) * mean reward
    entropy_coef: float = 0.0  # entropy bonus per sampled decision
    max_grad_norm: float = 1.0  # gradient-norm clipping of each policy

    def __post_init__(self) -> None:
        check_shared_hyperparams(self)
        check_choice(self.schedule, "schedule", SCHEDULES)
        check_int(self.removal_iterations, "removal_iterations", optional=True)


@dataclass
class Progress:
    """Where a search is: iterations done, the current stage, and the best removal decisions found so far
    (decision index -> action) with their reward."""

    iteration: int = 0
    stage: str = ""
    best_removal: dict[int, int] | None = None
    best_removal_reward: float = -math.inf


@dataclass
class Episode:
    reward: float
    info: dict[str, Any]
    log_prob: torch.Tensor  # of the sampled (not frozen or forced) actions
    entropy: torch.Tensor
    removal: dict[int, int]  # decision index -> removal-pass action


def make_controller(n_actions: int, hp: Hyperparams) -> nn.ModuleDict:
    """The two policies, ``{"removal": RemovalPolicy, "shrink": ShrinkPolicy}`` (what a checkpoint holds)."""
    return nn.ModuleDict({"removal": RemovalPolicy(hp.hidden), "shrink": ShrinkPolicy(n_actions, hp.hidden)})


def rollout(env: gym.Env, shrink: ShrinkPolicy, removal_logits: torch.Tensor | None, stage: str,
            frozen: dict[int, int] | None, keep: int, generator: torch.Generator) -> Episode:
    """Play one episode. The removal pass samples from ``removal_logits`` (stages "removal", "joint") or plays
    ``frozen`` (stage "shrink"; undecided = keep); the shrink pass samples from ``shrink``."""
    obs, info = env.reset()
    n = info["n_decisions"]
    log_prob, entropy = torch.zeros(()), torch.zeros(())
    removal: dict[int, int] = {}
    prev, state = None, None
    while True:
        mask = env.unwrapped.action_masks()
        if not is_shrink_pass(obs):
            j = decision_index(obs, n)
            if stage == "shrink":
                action = (frozen or {}).get(j, keep)
            else:
                choice, lp, ent = sample_masked(removal_logits[j], mask[[0, keep]], generator)
                action, log_prob, entropy = (0, keep)[choice], log_prob + lp, entropy + ent
            removal[j] = action
        else:
            logits, state = shrink.step(obs, prev, state)
            action, lp, ent = sample_masked(logits, mask, generator)
            log_prob, entropy, prev = log_prob + lp, entropy + ent, action
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return Episode(float(reward), info, log_prob, entropy, removal)


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        **hyperparams: Any) -> None:
    """Search with N2N's controllers until ``log.episodes >= episodes`` (see the module docstring); the full
    agent state goes to ``checkpoint`` after every iteration, ``resume`` continues from it, ``init_from`` loads
    another run's controller weights only (policy transfer)."""
    hp = make_hyperparams(Hyperparams, hyperparams)
    env = env_fn()
    try:
        _, info = env.reset(seed=seed)
        n_actions = check_sequential(env)
        if info["stages"] != "two_stage":
            raise ValueError(f"reinforce follows N2N's removal and shrink passes and needs an env with "
                             f"stages='two_stage', got stages={info['stages']!r}; actor_critic and "
                             f"encoder_decoder run on joint envs")
        keep = env.unwrapped.action_of(1.0)
        features = layer_features(info["layer_table"])
        controller = seeded(seed, lambda: make_controller(n_actions, hp))
        optimizers = {name: torch.optim.Adam(controller[name].parameters(), lr=lr)
                      for name, lr in (("removal", hp.removal_lr), ("shrink", hp.shrink_lr))}
        generator = torch.Generator().manual_seed(seed)
        baseline = MovingAverageBaseline(hp.baseline_decay)
        progress = Progress()
        if init_from is not None:
            load_controller(init_from, agent=AGENT, n_actions=n_actions, controller=controller)
        if resume and checkpoint is not None and Path(checkpoint).exists():
            state = load_agent(checkpoint, agent=AGENT, n_actions=n_actions, controller=controller,
                               optimizers=optimizers, generator=generator)
            baseline.value, log.episodes = state["baseline"], state["episodes"]
            progress = Progress(**{f.name: state[f.name] for f in dataclasses.fields(Progress)})

        removable = any(row["removable"] for row in info["layer_table"])
        removal_iterations = (0 if not removable else hp.removal_iterations if hp.removal_iterations is not None
                              else math.ceil(episodes / hp.rollouts) // 2)
        while log.episodes < episodes:
            stage = ("joint" if hp.schedule == "joint"
                     else "removal" if progress.iteration < removal_iterations else "shrink")
            if stage != progress.stage:  # a new stage starts from its own reward level
                progress.stage, baseline.value = stage, None
            removal_logits = controller["removal"](features) if stage != "shrink" else None
            batch = play_episodes(env, min(hp.rollouts, episodes - log.episodes), lambda e: rollout(
                e, controller["shrink"], removal_logits, stage, progress.best_removal, keep, generator))
            for ep in batch:
                log.record(ep.reward, ep.info)
                if stage == "removal" and ep.reward > progress.best_removal_reward:
                    progress.best_removal, progress.best_removal_reward = ep.removal, ep.reward

            rewards = torch.tensor([ep.reward for ep in batch])
            advantages = baseline.advantages(rewards)
            log_probs = torch.stack([ep.log_prob for ep in batch])
            entropy = torch.stack([ep.entropy for ep in batch]).mean()
            loss = -(advantages * log_probs).mean() - hp.entropy_coef * entropy
            trained = ["shrink"] if stage == "shrink" else ["removal", "shrink"]
            for name in trained:
                optimizers[name].zero_grad()
            if loss.requires_grad:  # False when every action of the batch was forced by the masks
                loss.backward()
                for name in trained:
                    nn.utils.clip_grad_norm_(controller[name].parameters(), hp.max_grad_norm)
                    optimizers[name].step()
            baseline.update(rewards)
            progress.iteration += 1
            for key, value in (("loss", loss.item()), ("baseline", baseline.value), ("entropy", entropy.item()),
                               ("mean_reward", float(rewards.mean()))):
                log.scalar(f"train/{key}", value)
            if checkpoint is not None:
                save_agent(checkpoint, agent=AGENT, n_actions=n_actions, controller=controller,
                           optimizers=optimizers, generator=generator, baseline=baseline.value,
                           episodes=log.episodes, **dataclasses.asdict(progress),
                           hyperparams=dataclasses.asdict(hp))
    finally:
        env.close()
