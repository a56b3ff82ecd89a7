"""Parallel student evaluation: one env against 2 workers (gymnasium AsyncVectorEnv and SB3 SubprocVecEnv),
side by side in one run, on the same students, every mode writing one shared results store of its own.

Students are drawn once (masked random one-shot actions, seeded) and evaluated in each mode; every worker is
warmed up first on a student of its own (teacher views cached, kernels loaded), so the timed part is the
steady-state evaluation rate. The single env uses all ``--threads`` intra-op threads; each of the ``--workers``
workers gets ``threads // workers``. Prints students per minute and the speed-up over the single env.

    .venv/bin/python bench/parallel_eval.py --students 16
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import SubprocVecEnv

import ddc_env  # noqa: F401  (registers the ids)


@dataclass(frozen=True)
class Factory:
    """A picklable env constructor that also sets the worker's torch thread count."""

    env_id: str
    kwargs: dict[str, Any]
    threads: int

    def __call__(self) -> gym.Env:
        torch.set_num_threads(self.threads)
        return gym.make(self.env_id, **self.kwargs)


def draw_actions(env: gym.Env, n: int, seed: int) -> list[np.ndarray]:
    """``n`` distinct masked random one-shot actions (no removals, so every student is valid)."""
    masks = env.unwrapped.action_masks().reshape(len(env.unwrapped.decisions), -1).copy()
    masks[:, 0] &= False  # keep every unit
    rng, seen, out = np.random.default_rng(seed), set(), []
    while len(out) < n:
        action = np.array([rng.choice(np.flatnonzero(row)) for row in masks], dtype=np.int64)
        if tuple(action) not in seen:
            seen.add(tuple(action))
            out.append(action)
    return out


def run_single(factory: Factory, warmup: np.ndarray, actions: list[np.ndarray]) -> float:
    env = factory()
    env.reset(seed=0)
    env.step(warmup)
    start = time.perf_counter()
    for a in actions:
        env.reset()
        env.step(a)
    seconds = time.perf_counter() - start
    env.close()
    return seconds


def run_vector(kind: str, factory: Factory, workers: int, warmups: list[np.ndarray],
               actions: list[np.ndarray]) -> float:
    """Seconds to evaluate ``actions`` ``workers`` at a time (one-step episodes reset in the same step)."""
    if kind == "async":
        envs = gym.vector.AsyncVectorEnv([factory] * workers,
                                         autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        envs.reset(seed=0)

        def step(batch: np.ndarray) -> None:
            envs.step(batch)
    else:
        envs = SubprocVecEnv([factory] * workers)
        envs.reset()

        def step(batch: np.ndarray) -> None:
            envs.step(batch)
    step(np.stack(warmups[:workers]))
    start = time.perf_counter()
    for i in range(0, len(actions), workers):
        step(np.stack(actions[i:i + workers]))
    seconds = time.perf_counter() - start
    envs.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="DDC-LeNet5-MNIST")
    parser.add_argument("--dataset", default="mnist_sample")
    parser.add_argument("--fidelity", default="fast")
    parser.add_argument("--students", type=int, default=16, help="students per mode (a multiple of --workers)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.students % args.workers:
        parser.error("--students must be a multiple of --workers")

    with tempfile.TemporaryDirectory() as tmp:
        def factory(mode: str, threads: int) -> Factory:
            kwargs = {"dataset": args.dataset, "fidelity": args.fidelity, "latency": "flops",
                      "action_mode": "one_shot", "store": str(Path(tmp) / f"{mode}.sqlite"), "seed": args.seed}
            return Factory(args.env_id, kwargs, threads)

        probe = factory("probe", args.threads)()  # trains and caches an "auto" teacher once, before timing
        drawn = draw_actions(probe, args.students + args.workers, args.seed)
        probe.close()
        warmups, actions = drawn[:args.workers], drawn[args.workers:]
        per_worker = max(1, args.threads // args.workers)
        single = run_single(factory("single", args.threads), warmups[0], actions)
        async_s = run_vector("async", factory("async", per_worker), args.workers, warmups, actions)
        subproc = run_vector("subproc", factory("subproc", per_worker), args.workers, warmups, actions)

    print(f"{args.env_id} ({args.dataset}, {args.fidelity} fidelity): {args.students} students per mode, "
          f"{args.threads} threads in all")
    print("| mode | workers x threads | seconds | students/min | speed-up |")
    print("|---|---|---|---|---|")
    for name, workers, threads, seconds in (("single env", 1, args.threads, single),
                                            ("gymnasium AsyncVectorEnv", args.workers, per_worker, async_s),
                                            ("SB3 SubprocVecEnv", args.workers, per_worker, subproc)):
        print(f"| {name} | {workers} x {threads} | {seconds:.1f} | {60 * args.students / seconds:.1f} | "
              f"{single / seconds:.2f}x |")


if __name__ == "__main__":
    main()
