"""Student evaluations on Ray against the local scorer, side by side in one run, on the same students.

Modes: the local live scorer (this process, all ``--threads``), a Ray pool of 1 worker (``--threads`` CPUs and
threads: the same compute as local, so the difference is Ray's own cost) and a Ray pool of ``--workers`` workers
(``--threads // --workers`` each). The same ``--students`` LeNet-5 students (masked random widths, seeded) are
scored by every mode, in rounds that alternate the modes so machine noise hits all of them; every worker (and the
local scorer) first scores a warm-up student of its own, untimed. The Ray pools run side by side on one local Ray
instance with ``--threads`` x 2 logical CPUs (a pool waits while another mode runs). Prints, per mode, students per
minute, the speed-up over local, and the overhead per evaluation: (wall seconds per student x workers - the
evaluation's own seconds) / the evaluation's own seconds, i.e. the time outside KD training and measuring (queue,
serialisation, transfer) relative to it.

    .venv/bin/python bench/ray_eval.py --students 16
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import ray

import ddc_env.registration as registration
from ddc_env.arch import NetSpec
from ddc_env.scoring import LiveScorer, Scorer
from ddc_env.scoring.ray import RayScorer
from ddc_env.task import Task, load_task


def draw_students(task: Task, n: int, seed: int) -> list[NetSpec]:
    """``n`` distinct students: every decision kept at a random allowed width (no removals)."""
    rng, seen, out = np.random.default_rng(seed), set(), []
    while len(out) < n:
        choices = {d.name: task.action_choices[int(rng.choice(np.flatnonzero(task.allowed(d)[1:]) + 1))]
                   for d in task.decisions}
        spec = task.student_spec(choices)
        if spec.hash() not in seen:
            seen.add(spec.hash())
            out.append(spec)
    return out


def timed(scorer: Scorer, specs: list[NetSpec]) -> tuple[float, list[dict[str, Any]]]:
    """Wall seconds to score ``specs`` (all submitted at once: a pool works on them in parallel) and the records."""
    start = time.perf_counter()
    records = scorer.score_many(specs)
    return time.perf_counter() - start, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="DDC-LeNet5-MNIST")
    parser.add_argument("--dataset", default="mnist_sample")
    parser.add_argument("--fidelity", default="fast")
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--students", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="the students are split into this many rounds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all, per mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = registration.env_config(args.env_id, {"dataset": args.dataset, "fidelity": args.fidelity,
                                                   "latency": "flops", "teacher_epochs": args.teacher_epochs})
    task = load_task(config.task_config())  # an "auto" teacher trains here once, before anything is timed
    local = LiveScorer(task, **config.scorer_kwargs(), threads=args.threads)
    drawn = draw_students(task, args.students + 1 + 1 + args.workers, args.seed)
    warmups, students = drawn[:2 + args.workers], drawn[2 + args.workers:]

    ray.init(num_cpus=2 * args.threads, include_dashboard=False, log_to_driver=False)
    per_worker = max(1, args.threads // args.workers)
    started = time.perf_counter()
    pools = {"Ray, 1 worker": RayScorer(config.task_config(), **config.scorer_kwargs(), workers=1,
                                        num_cpus=args.threads, threads=args.threads),
             f"Ray, {args.workers} workers": RayScorer(config.task_config(), **config.scorer_kwargs(),
                                                       workers=args.workers, num_cpus=per_worker, threads=per_worker)}
    startup = time.perf_counter() - started
    modes: dict[str, Scorer] = {"local": local, **pools}
    workers = {"local": 1, "Ray, 1 worker": 1, f"Ray, {args.workers} workers": args.workers}
    threads = {"local": args.threads, "Ray, 1 worker": args.threads, f"Ray, {args.workers} workers": per_worker}
    try:
        local.score(warmups[0])
        pools["Ray, 1 worker"].score(warmups[1])
        pools[f"Ray, {args.workers} workers"].score_many(warmups[2:])
        seconds = dict.fromkeys(modes, 0.0)
        records: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
        chunks = np.array_split(np.arange(len(students)), args.rounds)
        for r, chunk in enumerate(chunks):
            names = list(modes)
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
                s, recs = timed(modes[name], [students[i] for i in chunk])
                seconds[name] += s
                records[name] += recs
    finally:
        for pool in pools.values():
            pool.shutdown()
        ray.shutdown()

    accs = {name: [r["val_acc"] for r in recs] for name, recs in records.items()}
    n = len(students)
    print(f"{args.env_id} ({args.dataset}, {args.fidelity} fidelity, FLOP-timed): {n} students per mode in "
          f"{args.rounds} alternating rounds, {args.threads} threads per mode; the two pools started in {startup:.0f} s")
    print("| mode | workers x threads | seconds | students/min | speed-up | eval s/student | overhead/eval |")
    print("|---|---|---|---|---|---|---|")
    for name in modes:
        eval_s = statistics.mean(r["eval_seconds"] for r in records[name])
        overhead = (seconds[name] / n * workers[name] - eval_s) / eval_s
        print(f"| {name} | {workers[name]} x {threads[name]} | {seconds[name]:.1f} | {60 * n / seconds[name]:.1f} | "
              f"{seconds['local'] / seconds[name]:.2f}x | {eval_s:.2f} | {overhead:.3f} |")
    same = all(accs[name] == accs["local"] for name in modes if threads[name] == args.threads)
    print(f"val accuracies equal to local's (same threads): {same}; mean val acc per mode: "
          + ", ".join(f"{name} {statistics.mean(a):.4f}" for name, a in accs.items()))


if __name__ == "__main__":
    main()
