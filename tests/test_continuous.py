"""AMC's mode: a continuous keep ratio per step, budget-constrained actions (every student meets the budget) and AMC's
rewards, on the twins (no training) in every action mode."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import ddc_env  # noqa: F401  (registers the ids)
from checkers import check_env
from ddc_env.rewards import make_reward

TWINS = ("DDC-Bench-LeNet5-MNIST-v0", "DDC-Bench-ResNet18-CIFAR10-v0")


def _episode(env: gym.Env, rng: np.random.Generator) -> tuple[float, dict, list[dict]]:
    """One episode of random actions from the action space (unmasked); the terminal reward and info, and the
    non-terminal step infos."""
    env.reset()
    steps = []
    while True:
        _, reward, terminated, _, info = env.step(env.action_space.sample() if rng is None else
                                                  np.array([rng.random()], dtype=np.float32))
        if terminated:
            return reward, info, steps
        steps.append(info)


@pytest.mark.parametrize("env_id", TWINS)
def test_continuous_mode_passes_both_checkers_and_reports_the_widths(env_id):
    env = gym.make(env_id, action_mode="continuous").unwrapped
    assert env.action_space == gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    check_env(env)
    env.reset(seed=0)
    widths = set(env.task.width_choices) | {0.0}
    _, info, steps = _episode(env, np.random.default_rng(0))
    for step in [*steps, info]:
        assert 0.0 <= step["keep_ratio"] <= 1.0 and step["width"] in widths and step["clipped"] is False
    assert set(info["choices"].values()) <= widths


def test_a_keep_ratio_maps_to_the_nearest_allowed_width_and_removes_below_the_threshold():
    env = gym.make("DDC-Bench-LeNet5-MNIST-v0", action_mode="continuous", stages="joint", remove_below=0.2).unwrapped
    env.reset(seed=0)
    decisions = [d.name for d in env.decisions]
    ratios = {"conv1": 0.05, "conv2": 0.52, "fc1": 0.15, "fc2": 0.97}  # conv1 is not removable
    for name in decisions:
        _, _, done, _, info = env.step(np.array([ratios[name]], dtype=np.float32))
    assert done
    assert info["choices"] == {"conv1": 0.25, "conv2": 0.5, "fc1": 0.0, "fc2": 1.0}


@pytest.mark.parametrize("mode", ["sequential", "one_shot", "continuous"])
@pytest.mark.parametrize("key, ratio", [("flops", 0.3), ("params", 0.15), ("latency", 0.3)])
def test_every_student_meets_the_budget_in_every_mode(mode, key, ratio):
    env = gym.make("DDC-Bench-ResNet18-CIFAR10-v0", action_mode=mode, budget={key: ratio}).unwrapped
    env.action_space.seed(0)
    clipped = 0
    for _ in range(12):
        _, info, _ = _episode(env, None)
        assert info[{"flops": "flop_ratio", "params": "param_ratio", "latency": "latency_ratio"}[key]] <= ratio + 1e-9
        clipped += info["clipped_actions"]
    assert clipped > 0  # random actions ask for more than the budget allows, and are narrowed


def test_an_unreachable_budget_and_bad_budgets_are_refused_before_any_episode():
    with pytest.raises(ValueError, match="cannot be met"):
        gym.make("DDC-Bench-ResNet18-CIFAR10-v0", budget={"params": 0.001})
    with pytest.raises(ValueError, match="budget key"):
        gym.make("DDC-Bench-ResNet18-CIFAR10-v0", budget={"memory": 0.5})
    with pytest.raises(ValueError, match="budget ratio"):
        gym.make("DDC-Bench-ResNet18-CIFAR10-v0", budget={"flops": float("nan")})


@pytest.mark.parametrize("action", [np.array([1.5], dtype=np.float32), np.array([np.nan], dtype=np.float32), "x"])
def test_out_of_range_keep_ratios_raise(action):
    env = gym.make("DDC-Bench-LeNet5-MNIST-v0", action_mode="continuous").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="keep ratio in"):
        env.step(action)


def test_amc_rewards():
    record = {"status": "ok", "val_acc": 0.9, "flops": 1e6, "teacher_flops": 1e7}
    assert make_reward({"name": "amc"})(record) == pytest.approx(-0.1 * math.log(1e6))
    assert make_reward({"name": "amc", "objective": "error"})(record) == pytest.approx(-0.1)
    failed = {"status": "diverged", "val_acc": None, "teacher_flops": 1e7}
    assert make_reward({"name": "amc"})(failed) == pytest.approx(-math.log(1e7))  # below every ok student's
    env = gym.make("DDC-Bench-LeNet5-MNIST-v0", action_mode="continuous", reward={"name": "amc"}).unwrapped
    env.reset(seed=0)
    reward, info, _ = _episode(env, np.random.default_rng(1))
    assert reward == pytest.approx(-(1 - info["val_acc"]) * math.log(info["flops"]))
