"""Episodes per minute of the benchmark twins against the live env, on the same students, in one run.

Masked random episodes (one core: ``torch.set_num_threads(1)``) on ``DDC-Bench-LeNet5-MNIST-v0`` and
``DDC-Bench-ResNet18-CIFAR10-v0`` (when its table ships), and the live ``DDC-LeNet5-MNIST`` at ``fast`` on the first
students the twin saw (a fresh results store: every student is trained). Prints a markdown table.

    .venv/bin/python bench/twin_speed.py --seconds 20 --live-students 8
"""
from __future__ import annotations

import argparse
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch

import ddc_env
from ddc_env.registration import BENCH_IDS
from ddc_env.tables import TABLES_DIR


def episodes(env: gym.Env, seconds: float | None = None, count: int | None = None,
             seed: int = 0) -> tuple[int, float, list[dict]]:
    """Masked random episodes until ``seconds`` pass or ``count`` are done: (episodes, seconds, terminal infos)."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    infos: list[dict] = []
    start = time.perf_counter()
    while (seconds is None or time.perf_counter() - start < seconds) and (count is None or len(infos) < count):
        env.reset()
        while True:
            _, _, done, _, info = env.step(int(rng.choice(np.flatnonzero(env.unwrapped.action_masks()))))
            if done:
                infos.append(info)
                break
    return len(infos), time.perf_counter() - start, infos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of episodes per twin")
    parser.add_argument("--live-students", type=int, default=8, help="episodes of the live env")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for env_id in BENCH_IDS:
        n, secs, infos = episodes(gym.make(env_id), args.seconds)
        rows.append((env_id, n, secs, sum(i["simulated_seconds"] for i in infos)))
    with tempfile.TemporaryDirectory() as tmp:
        live = gym.make("DDC-LeNet5-MNIST", dataset="mnist_sample", fidelity="fast",
                        teacher=str(TABLES_DIR / "lenet5_mnist.teacher.pt"), store=f"{tmp}/r.sqlite")
        n, secs, infos = episodes(live, count=args.live_students)
        rows.append(("DDC-LeNet5-MNIST (live, fast)", n, secs, sum(i["simulated_seconds"] for i in infos)))
    print(f"masked random episodes, one torch thread, ddc-env {ddc_env.__version__}")
    print("| env | episodes | seconds | episodes / min | simulated seconds of live training they stand for |")
    print("|---|---|---|---|---|")
    for env_id, n, secs, simulated in rows:
        print(f"| {env_id} | {n:,} | {secs:.1f} | {n / secs * 60:,.0f} | {simulated:,.0f} |")


if __name__ == "__main__":
    main()
