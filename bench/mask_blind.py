"""A mask-blind agent on a twin: stable-baselines3's plain PPO, which never reads ``action_masks()``, on
``DDC-Bench-LeNet5-MNIST-v0`` with masked actions mapped to the nearest allowed one (the default) and with N2N's -1
penalty. Prints, per tenth of the run: mean reward, the share of valid episodes and masked actions per episode.

    .venv/bin/python bench/mask_blind.py --episodes 3000 --seed 0
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.agents import sb3
from ddc_env.lab.runs import SearchLog

ENV_ID = "DDC-Bench-LeNet5-MNIST-v0"


class Curve(SearchLog):
    """A search log without files that keeps every episode's reward and info."""

    def __init__(self, episodes: int) -> None:
        super().__init__(None, episodes, progress=False)
        self.rewards: list[float] = []
        self.valid: list[bool] = []
        self.masked: list[int] = []

    def record(self, reward: float, info: dict) -> None:
        super().record(reward, info)
        self.rewards.append(reward)
        self.valid.append(info["status"] == "ok")
        self.masked.append(int(info.get("masked_actions", 0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"plain PPO (no masks) on {ENV_ID}, {args.episodes} episodes, seed {args.seed}")
    print("| masked_action | episodes | mean reward | valid episodes | masked actions per episode |")
    print("|---|---|---|---|---|")
    for mode in ("nearest", "penalty"):
        log = Curve(args.episodes)
        sb3.run(lambda m=mode: gym.make(ENV_ID, masked_action=m), episodes=args.episodes, log=log, algo="ppo",
                seed=args.seed)
        tenth = args.episodes // 10
        for k in range(10):
            window = slice(k * tenth, (k + 1) * tenth)
            print(f"| {mode} | {k * tenth + 1}-{(k + 1) * tenth} | {np.mean(log.rewards[window]):.3f} | "
                  f"{np.mean(log.valid[window]):.2f} | {np.mean(log.masked[window]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
