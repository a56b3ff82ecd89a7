"""Gymnasium's and stable-baselines3's env checkers, run on a DDC env (live or twin)."""
from __future__ import annotations

import gymnasium as gym
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

CHECKER_SEED = 123  # the action-space seed both checkers step with


def check_env(env: gym.Env) -> None:
    """Both checkers on ``env`` (unwrapped). They step twice from the same seed and compare infos, and the second
    evaluation of a student is a cache hit (``cache_hit`` and ``simulated_seconds`` differ), so the checkers'
    student is scored once first: both of their steps are then hits with equal infos."""
    env.action_space.seed(CHECKER_SEED)
    action = env.action_space.sample()
    env.reset(seed=CHECKER_SEED)
    env.step(action)
    gym_check_env(env)
    sb3_check_env(env, warn=True)
