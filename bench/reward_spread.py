"""Does the reward vary? Rewards of the same masked random students under each reward, on both twins.

For each benchmark twin at its default fidelity: ``--students`` masked random episodes (seeded, so every reward
sees the same students), rewarded by the default calibrated reward, the DDC paper's formula and N2N's. Prints the
standard deviation, the share of students above 0.01, and the minimum, median and maximum.

    .venv/bin/python bench/reward_spread.py --students 100
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import ddc_env
from ddc_env.registration import BENCH_IDS
from twin_speed import episodes

REWARDS = ("calibrated", "ddc", "n2n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.students} masked random students per twin (seed {args.seed}), ddc-env {ddc_env.__version__}")
    print("| env | reward | std | share > 0.01 | min | median | max |")
    print("|---|---|---|---|---|---|---|")
    for env_id in BENCH_IDS:
        for reward in REWARDS:
            _, _, infos = episodes(gym.make(env_id, reward=reward), count=args.students, seed=args.seed)
            r = np.array([info["reward"] for info in infos])
            print(f"| {env_id} | {reward} | {r.std():.3f} | {np.mean(r > 0.01):.0%} | {r.min():.4f} | "
                  f"{np.median(r):.4f} | {r.max():.4f} |")


if __name__ == "__main__":
    main()
