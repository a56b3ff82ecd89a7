"""Does the reward vary? Rewards of the same masked random students under each reward, on both twins.

For each benchmark twin at its default fidelity: ``--students`` masked random episodes (seeded, so every reward
sees the same students), rewarded by the default calibrated reward, the DDC paper's formula and N2N's. Prints the
standard deviation, the share of students above 0.01, and the minimum, median and maximum. ``--live N`` adds N
students of the live ``DDC-LeNet5-MNIST`` on the packaged MNIST sample (what the LeNet-5 twin tabulates; really
trained at the default fidelity, timed with this machine's latency table; one temporary results store, so the
second and third reward re-score the same records).

    .venv/bin/python bench/reward_spread.py --students 100
    .venv/bin/python bench/reward_spread.py --students 100 --live 100
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

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
    parser.add_argument("--live", type=int, default=0, help="students of the live DDC-LeNet5-MNIST (default 0)")
    args = parser.parse_args()
    print(f"{args.students} masked random students per twin (seed {args.seed}), ddc-env {ddc_env.__version__}")
    print("| env | reward | std | share > 0.01 | min | median | max |")
    print("|---|---|---|---|---|---|---|")
    for env_id in BENCH_IDS:
        for reward in REWARDS:
            row(env_id, reward, gym.make(env_id, reward=reward), args.students, args.seed)
    if args.live:
        with tempfile.TemporaryDirectory(prefix="reward_spread_") as tmp:
            for reward in REWARDS:
                env = gym.make("DDC-LeNet5-MNIST", dataset="mnist_sample", reward=reward,
                               store=str(Path(tmp) / "store.sqlite"))
                label = f"DDC-LeNet5-MNIST, mnist_sample (live, {args.live} students)"
                row(label, reward, env, args.live, args.seed)
                env.close()


def row(label: str, reward: str, env: gym.Env, count: int, seed: int) -> None:
    """One table row: the reward's spread over ``count`` masked random episodes of ``env``."""
    _, _, infos = episodes(env, count=count, seed=seed)
    r = np.array([info["reward"] for info in infos])
    print(f"| {label} | {reward} | {r.std():.3f} | {np.mean(r > 0.01):.0%} | {r.min():.4f} | "
          f"{np.median(r):.4f} | {r.max():.4f} |", flush=True)


if __name__ == "__main__":
    main()
