"""Median time of a non-terminal ``DDCEnv.step()`` (target: < 100 microseconds).

The teacher is a zoo spec with random weights on a small random dataset written to a temporary directory:
a step that is not the last one never trains or measures anything, so neither matters here. Episodes are
cut before their last step, so no student is ever evaluated.

    .venv/bin/python bench/step_time.py --model resnet18 --steps 10000
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ddc_env.arch import build
from ddc_env.env import DDCEnv
from ddc_env.models import get_model_spec
from ddc_env.models.checkpoints import TeacherCheckpoint


def write_random_npz(directory: Path, shape: tuple[int, int, int], classes: int = 10, n: int = 200) -> None:
    """``bench_train.npz`` / ``bench_test.npz`` of random uint8 NHWC images."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        x = rng.integers(0, 256, (n, shape[1], shape[2], shape[0]), dtype=np.uint8)
        np.savez(directory / f"bench_{split}.npz", x=x, y=np.arange(n) % classes)


def time_steps(env: DDCEnv, steps: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """Seconds per non-terminal ``step()`` and per ``action_masks()`` call, with random allowed actions."""
    rng = np.random.default_rng(seed)
    step_times, mask_times = [], []
    env.reset(seed=seed)
    while len(step_times) < steps:
        t0 = time.perf_counter()
        mask = env.action_masks()
        t1 = time.perf_counter()
        mask_times.append(t1 - t0)
        action = int(rng.choice(np.flatnonzero(mask)))
        if env.steps_left == 1:  # the last step would train a student: start over instead
            env.reset()
            continue
        t0 = time.perf_counter()
        terminated = env.step(action)[2]
        elapsed = time.perf_counter() - t0
        if terminated:  # a removal emptied the shrink pass: that step evaluated a student, so it is not timed
            env.reset()
        else:
            step_times.append(elapsed)
    return step_times, mask_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", help="zoo model name (default resnet18)")
    parser.add_argument("--steps", type=int, default=10_000, help="timed steps per stage order")
    args = parser.parse_args()

    spec = get_model_spec(args.model, **({"in_channels": 1, "input_size": (28, 28)} if args.model == "lenet5" else {}))
    torch.manual_seed(0)
    teacher = TeacherCheckpoint(build(spec).eval(), spec, {}, Path("random-weights"))
    with tempfile.TemporaryDirectory() as tmp:
        write_random_npz(Path(tmp), (spec.in_channels, *spec.input_size), spec.num_classes)
        for stages in ("two_stage", "joint"):
            env = DDCEnv(model=args.model, teacher=teacher, dataset="bench", data_dir=tmp, fidelity="zero",
                         latency="flops", device="cpu", stages=stages, kernel_shrink=True)
            step_times, mask_times = time_steps(env, args.steps)
            print(f"{args.model} {stages:9s} {len(env.decisions)} decisions: median step "
                  f"{statistics.median(step_times) * 1e6:.1f} us (p90 "
                  f"{np.percentile(step_times, 90) * 1e6:.1f} us), median action_masks "
                  f"{statistics.median(mask_times) * 1e6:.1f} us over {len(step_times)} steps")


if __name__ == "__main__":
    main()
