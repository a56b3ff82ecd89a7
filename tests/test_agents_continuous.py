"""AMC's continuous-control agents (agents/sb3.py: ddpg, td3, sac) on the real twins in ``action_mode="continuous"``:
every algorithm on both twins with and without a budget, a killed run resumed (episode count, replay buffer, noise
sigma), the truncated-normal noise (within the action range, decayed per episode), refusals before any env step, and
learning against random search in the same mode."""
from __future__ import annotations

import functools
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.stats import truncnorm
from stable_baselines3 import SAC
from stable_baselines3.common.save_util import load_from_pkl

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.agents import sb3
from ddc_env.agents.amc_exploration import AMCDDPG, AMCTD3, TruncatedNormalNoise
from ddc_env.agents.random_search import random_search

LENET, RESNET = "DDC-Bench-LeNet5-MNIST-v0", "DDC-Bench-ResNet18-CIFAR10-v0"
ALGOS = ("ddpg", "td3", "sac")
NOISY = ("ddpg", "td3")
SIGMA, DECAY = sb3.HYPERPARAMS["ddpg"]["noise_sigma"], sb3.HYPERPARAMS["ddpg"]["noise_decay"]


class Log:
    """An in-memory episode log: every reward, info and agent scalar; raises at episode ``kill_at`` (a killed run)."""

    def __init__(self, start_episode: int = 0, kill_at: int | None = None) -> None:
        self.episodes, self.best_reward, self.kill_at = start_episode, -math.inf, kill_at
        self.rewards: list[float] = []
        self.infos: list[dict[str, Any]] = []
        self.scalars: dict[str, list[float]] = {}

    def record(self, reward: float, info: dict[str, Any]) -> None:
        if self.episodes + 1 == self.kill_at:
            raise KeyboardInterrupt("killed")
        self.episodes += 1
        self.best_reward = max(self.best_reward, reward)
        self.rewards.append(reward)
        self.infos.append(info)

    def scalar(self, name: str, value: float, step: int | None = None) -> None:
        self.scalars.setdefault(name, []).append(value)


class Counting(gym.Wrapper):
    """Counts the steps and resets of the env it wraps in ``calls``."""

    def __init__(self, env: gym.Env, calls: list[str]) -> None:
        super().__init__(env)
        self.calls = calls

    def reset(self, **kwargs: Any) -> Any:
        self.calls.append("reset")
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        self.calls.append("step")
        return self.env.step(action)


def twin(env_id: str, **kwargs: Any) -> Callable[[], gym.Env]:
    return functools.partial(gym.make, env_id, action_mode="continuous", **kwargs)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one torch thread is faster than two and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("budget", [None, {"flops": 0.5}])
@pytest.mark.parametrize("env_id", [LENET, RESNET])
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algo_searches_both_twins(algo: str, env_id: str, budget: dict[str, float] | None) -> None:
    log = Log()
    sb3.run(twin(env_id, budget=budget), episodes=5, log=log, algo=algo, warmup_episodes=2)
    assert log.episodes == len(log.infos) == 5 and {info["status"] for info in log.infos} == {"ok"}
    assert log.rewards == [info["reward"] for info in log.infos]
    widths = set(gym.make(env_id).unwrapped.task.width_choices) | {0.0}
    assert all(set(info["choices"].values()) <= widths for info in log.infos)
    if budget is not None:  # AMC's clipping: every student meets the budget
        assert all(info["flop_ratio"] <= 0.5 + 1e-9 and "clipped_actions" in info for info in log.infos)
    assert any(name.startswith("train/") for name in log.scalars)  # updates happened after the warm-up


@pytest.mark.parametrize("algo", ALGOS)
def test_a_killed_run_resumes_with_its_replay_buffer_and_noise(algo: str, tmp_path: Path) -> None:
    """Killed during episode 5 (the checkpoint is the one after episode 4's update), resumed to 8 episodes; no
    warm-up, so every episode draws from the noise and sigma is SIGMA * DECAY ** episodes."""
    ckpt = tmp_path / "agent.ckpt"
    make = twin(LENET)
    with pytest.raises(KeyboardInterrupt):
        sb3.run(make, episodes=8, log=Log(kill_at=5), algo=algo, checkpoint=ckpt, warmup_episodes=0)
    zip_path, replay = tmp_path / "agent.ckpt.zip", tmp_path / "agent.ckpt.zip.replay.pkl"
    cls = {"ddpg": AMCDDPG, "td3": AMCTD3, "sac": SAC}[algo]
    saved = cls.load(zip_path)
    assert sb3.saved_episodes(ckpt) == 4 and load_from_pkl(replay).size() == saved.num_timesteps
    if algo in NOISY:
        assert saved.action_noise.sigma == pytest.approx(SIGMA * DECAY ** 4)
    log = Log(start_episode=sb3.saved_episodes(ckpt))
    sb3.run(make, episodes=8, log=log, algo=algo, checkpoint=ckpt, resume=True, warmup_episodes=0)
    resumed = cls.load(zip_path)
    assert log.episodes == 8 and len(log.infos) == 4 and sb3.saved_episodes(ckpt) == 8
    assert resumed.num_timesteps > saved.num_timesteps
    assert load_from_pkl(replay).size() == resumed.num_timesteps - 1  # all but the step the run stopped on
    if algo in NOISY:  # the decay continued from the checkpoint's sigma
        assert resumed.action_noise.sigma == pytest.approx(SIGMA * DECAY ** 8)
    else:
        assert resumed.action_noise is None  # SAC explores by its entropy bonus


def test_truncated_normal_noise_stays_in_range_and_decays_per_episode() -> None:
    low, high = np.zeros(1, np.float32), np.ones(1, np.float32)
    around = np.tile([[0.0], [0.5], [1.0]], (4000, 1))  # 4000 envs at each of three keep ratios
    draws = TruncatedNormalNoise(0.5, 0.9, seed=0).perturb(around, low, high).reshape(4000, 3)
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    # truncated, not clipped: no mass on the bounds (clipping a normal at 1.0 would put half the draws there), and
    # the mean of the draws around 1.0 is the truncated normal's
    assert not np.isin(draws, [0.0, 1.0]).any()
    assert draws[:, 2].mean() == pytest.approx(truncnorm.mean(-2.0, 0.0, loc=1.0, scale=0.5), abs=0.01)
    assert draws[:, 1].std() == pytest.approx(truncnorm.std(-1.0, 1.0, loc=0.5, scale=0.5), abs=0.01)
    noise = TruncatedNormalNoise(0.5, 0.9, seed=0)
    with pytest.raises(TypeError, match="perturb"):  # SB3's additive use would clip
        noise()
    noise.perturb(np.array([[0.0], [0.5], [1.0]]), low, high)  # three envs draw
    noise.reset(indices=[1])  # env 1's episode ended: one decay
    assert noise.sigma == pytest.approx(0.45)
    noise.reset()  # envs 0 and 2 ended; env 1 has not drawn since
    assert noise.sigma == pytest.approx(0.5 * 0.9 ** 3)
    noise.reset()
    assert noise.sigma == pytest.approx(0.5 * 0.9 ** 3)  # no draws, no decay (warm-up episodes do not count)
    noise.perturb(np.array([[0.5]]), low, high)
    noise.discard_episodes()  # the episode in flight ended without an evaluation
    noise.reset()
    assert noise.sigma == pytest.approx(0.5 * 0.9 ** 3)
    copy = pickle.loads(pickle.dumps(noise))  # what a checkpoint holds: sigma and the generator
    assert copy.sigma == noise.sigma and np.array_equal(copy.perturb(np.array([[0.3]]), low, high),
                                                        noise.perturb(np.array([[0.3]]), low, high))


@pytest.mark.parametrize("algo", NOISY)
def test_the_agents_act_with_the_truncated_noise_decayed_per_episode(algo: str) -> None:
    ratios: list[float] = []

    class Ratios(gym.Wrapper):
        def step(self, action: Any) -> Any:
            ratios.append(float(np.asarray(action).reshape(-1)[0]))
            return self.env.step(action)

    log = Log()
    sb3.run(lambda: Ratios(twin(LENET)()), episodes=12, log=log, algo=algo, warmup_episodes=1)
    # one sigma per episode after the warm-up, each DECAY times the last: the warm-up's 6 random steps end in
    # episode 1 or 2 (a LeNet-5 episode has 4 to 6 steps), so episodes 2-12 draw from the noise, and so does the
    # step the run stops on (it begins a 13th)
    sigmas = np.array(log.scalars["rollout/noise_sigma"])
    assert len(sigmas) == 12 and sigmas[0] == pytest.approx(SIGMA)
    assert np.allclose(sigmas[1:] / sigmas[:-1], DECAY)
    # within the action range and never on a bound (SB3's clipped noise puts many keep ratios at exactly 0 or 1)
    assert all(0.0 < r < 1.0 for r in ratios)


def test_bad_hyperparameters_and_mode_mismatches_are_refused_before_any_step() -> None:
    def never() -> gym.Env:
        raise AssertionError("no env should be built")

    for algo, bad, message in [("ddpg", {"noise_decay": 0.0}, "noise_decay must be a finite number > 0"),
                               ("td3", {"noise_sigma": -0.1}, "noise_sigma must be a finite number >= 0"),
                               ("td3", {"policy_delay": 0}, "policy_delay must be"),
                               ("sac", {"warmup_episodes": 1.5}, "warmup_episodes must be"),
                               ("sac", {"ent_coef": "auto_x"}, "ent_coef must be a number > 0, 'auto' or"),
                               ("sac", {"noise_sigma": 0.5}, r"unknown sac hyperparameter\(s\) \['noise_sigma'\]")]:
        with pytest.raises(ValueError, match=message):
            sb3.run(never, episodes=1, log=Log(), algo=algo, **bad)
    calls: list[str] = []
    for algo, kwargs, message in [
            ("ddpg", {}, r"ddpg needs action_mode='continuous'; this env's action space is Discrete\(8\) "
                         r"\(action_mode='sequential'\): make the env with action_mode='continuous', or use ppo, a2c, "
                         r"dqn, maskable_ppo, recurrent_ppo$"),
            ("sac", {"action_mode": "one_shot"}, "sac needs action_mode='continuous'.*'one_shot'"),
            ("dqn", {"action_mode": "continuous"}, r"dqn needs action_mode='sequential'.*Box.*"
                                                   r"use ppo, a2c, recurrent_ppo, ddpg, td3, sac$"),
            ("maskable_ppo", {"action_mode": "continuous"}, "maskable_ppo needs action_mode='sequential' or "
                                                            "'one_shot'")]:
        with pytest.raises(ValueError, match=message):
            sb3.run(lambda: Counting(gym.make(LENET, **kwargs), calls), episodes=1, log=Log(), algo=algo)
    assert calls == []


def test_random_search_draws_uniform_keep_ratios_in_continuous_mode() -> None:
    result = random_search(twin(LENET)(), 20, seed=0, progress=False)
    assert len(result.rewards) == 20 and {info["status"] for info in result.infos} == {"ok"}
    assert len({info["spec_hash"] for info in result.infos}) > 10


def test_hyperparams_sized_in_episodes() -> None:
    ddpg = sb3.resolve_hyperparams("ddpg", {"train_freq": [1, "episode"]}, episode_length=6, n_envs=1, seed=3)
    assert (ddpg["learning_starts"], ddpg["train_freq"], ddpg["gradient_steps"]) == (60, (1, "episode"), -1)
    assert isinstance(ddpg["action_noise"], TruncatedNormalNoise) and ddpg["action_noise"].sigma == SIGMA
    assert not {"warmup_episodes", "noise_sigma", "noise_decay"} & set(ddpg)
    assert sb3.resolve_hyperparams("td3", {"noise_sigma": 0}, episode_length=6, n_envs=1)["action_noise"] is None
    assert "action_noise" not in sb3.resolve_hyperparams("sac", {}, episode_length=17, n_envs=1)
