"""Does a twin predict the live env where the agents end? Each agent's best students on the board (one per seed, from
benchmark folders' ``results.csv``) are scored again on the live id the twin's table was built from (its teacher,
data, fidelity, reward, and the threads and batch size its units were timed with), on this machine, and compared
with what the twin said: reward, validation accuracy and latency ratio per student (mean |difference|, Kendall
tau), the agents ranked by the mean reward of their best students on the twin and live (Kendall tau), and whether
each agent's students also beat random search's live.

It re-scores where the searches ended, not the searches: the agents' trajectories are not replayed on the live env
(that is the full study of the DDC-Bench issue, 5 seeds x 100 live evaluations per agent). Prints the CPU and
precision; resumable (the live records go to a results store: a rerun trains nothing it has scored).

    .venv/bin/python bench/twin_vs_live.py --agents random maskable_ppo evolution tpe sac \\
        --folders bench/leaderboard/lenet5_mnist bench/leaderboard/lenet5_mnist-blackbox \\
        bench/leaderboard/lenet5_mnist-amc --device epyc-avx2

Time on a quiet machine: live latency is timed per unit on first use and kept (see docs/results/twin-vs-live.md).

Writes ``bench/results/twin_vs_live_<table>.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from scipy.stats import kendalltau

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.lab.benchmark.scores import probability_of_improvement
from ddc_env.lab.benchmark.validate import recorded_choices
from ddc_env.paths import atomic_write_text
from ddc_env.tables import BenchTable
from ddc_env.train import compute_signature

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ("reward", "val_acc", "latency_ratio")


def board_students(folders: Sequence[Path], agents: Sequence[str] | None) -> list[dict[str, Any]]:
    """The best student of every (agent, seed) in the folders' results.csv (an agent in two folders: the first)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for folder in folders:
        with open(folder / "results.csv", newline="") as f:
            for row in csv.DictReader(f):
                if agents is None or row["agent"] in agents:
                    rows.setdefault((row["agent"], row["seed"]), row)
    return list(rows.values())


def agreement(twin: Sequence[float], live: Sequence[float]) -> dict[str, float]:
    """Mean and largest |twin - live| and the Kendall tau of the two."""
    diffs = [abs(t - v) for t, v in zip(twin, live)]
    return {"mean_abs_diff": statistics.fmean(diffs), "max_abs_diff": max(diffs),
            "kendall_tau": float(kendalltau(twin, live).statistic)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folders", type=Path, nargs="+", required=True, help="benchmark folders of one twin")
    parser.add_argument("--agents", nargs="+", default=None, help="default: every agent in the folders")
    parser.add_argument("--store", type=Path, default=Path("runs/twin_vs_live.sqlite"), help="the live records")
    parser.add_argument("--device", default=None, help="also score the students on the twin with this device's unit "
                                                       "latency table (ddc table latency), e.g. this machine's")
    args = parser.parse_args()

    rows = board_students(args.folders, args.agents)
    if not rows:
        sys.exit(f"no best students of {args.agents} in {[str(f) for f in args.folders]}")
    twin_ids = {row["env_id"] for row in rows}
    if len(twin_ids) != 1:
        sys.exit(f"the folders hold more than one env: {sorted(twin_ids)}")
    table = BenchTable.load(gym.spec(twin_ids.pop()).kwargs["table"])
    machine = compute_signature("cpu")
    print(f"machine: {machine}; table built on {table.compute(table.default_fidelity)}", flush=True)
    timing = table.latency["describe"]  # the live env times units as the table did: same threads and batch size
    live_kwargs = {**table.meta["env_kwargs"], "fidelity": table.default_fidelity, "store": str(args.store),
                   "latency_threads": timing["threads"], "latency_batch_size": timing["batch_size"]}
    args.store.parent.mkdir(parents=True, exist_ok=True)
    env = gym.make(table.meta["env_id"], **live_kwargs).unwrapped
    students: dict[str, dict[str, Any]] = {}  # spec hash -> live record, each student scored once
    start = time.perf_counter()
    for i, row in enumerate(rows):
        if row["spec_hash"] not in students:
            record = env.evaluate_choices(recorded_choices(row, env.task.codec))
            if record["spec_hash"] != row["spec_hash"]:
                sys.exit(f"{row['agent']} seed {row['seed']}: the live env builds {record['spec_hash']}, "
                         f"the twin {row['spec_hash']}")
            students[row["spec_hash"]] = {name: float(record[name]) for name in FIELDS}
            print(f"[{i + 1}/{len(rows)}] {row['agent']} seed {row['seed']} {row['spec_hash']}: twin reward "
                  f"{float(row['reward']):.4f} acc {float(row['val_acc']):.4f}, live reward "
                  f"{students[row['spec_hash']]['reward']:.4f} acc {students[row['spec_hash']]['val_acc']:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        row["live"] = students[row["spec_hash"]]
    env.close()

    unique = list({row["spec_hash"]: row for row in rows}.values())
    per_student = {"twin": {name: agreement([float(r[name]) for r in unique], [r["live"][name] for r in unique])
                            for name in FIELDS}}
    if args.device:  # the same students on the twin timed with the device's unit table
        twin = gym.make(unique[0]["env_id"], device=args.device).unwrapped
        for row in unique:
            record = twin.evaluate_choices(recorded_choices(row, twin.task.codec))
            row["twin_device"] = {name: float(record[name]) for name in FIELDS}
        twin.close()
        per_student[f"twin on {args.device}"] = {
            name: agreement([r["twin_device"][name] for r in unique], [r["live"][name] for r in unique])
            for name in FIELDS}
    by_agent: dict[str, dict[str, Any]] = {}
    live_rewards: dict[str, np.ndarray] = {}
    for agent in dict.fromkeys(row["agent"] for row in rows):
        mine = [row for row in rows if row["agent"] == agent]
        live_rewards[agent] = np.array([r["live"]["reward"] for r in mine])
        by_agent[agent] = {"seeds": len(mine), "twin_reward": statistics.fmean(float(r["reward"]) for r in mine),
                           "live_reward": float(live_rewards[agent].mean())}
    if "random" in live_rewards:  # P(an agent's best student beats random search's, live), with its 95% CI
        for agent, (p, low, high) in probability_of_improvement(live_rewards, "random").items():
            by_agent[agent]["live_p_higher_than_random"] = {"probability": p, "ci": [low, high]}
    names = list(by_agent)
    ranking_tau = float(kendalltau([by_agent[a]["twin_reward"] for a in names],
                                   [by_agent[a]["live_reward"] for a in names]).statistic) if len(names) > 1 else None
    summary = {"students": len(unique), "best_students": len(rows), "per_student": per_student, "agents": by_agent,
               "agent_ranking_kendall_tau": ranking_tau, "seconds": time.perf_counter() - start}
    out = RESULTS / f"twin_vs_live_{table.name}.json"
    atomic_write_text(out, json.dumps({"command": " ".join([".venv/bin/python bench/twin_vs_live.py", *sys.argv[1:]]),
                                       "table_compute": table.compute(table.default_fidelity), "this_machine": machine,
                                       "live_env": {"id": table.meta["env_id"], "kwargs": live_kwargs},
                                       "summary": summary, "rows": rows}, indent=1, default=str))
    print("| agent | best students | twin reward (mean) | live reward (mean) | live: P(higher than random's) [95% CI] |")
    print("|---|---|---|---|---|")
    for agent, v in by_agent.items():
        p = v.get("live_p_higher_than_random")
        shown = "-" if p is None else f"{p['probability']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"
        print(f"| {agent} | {v['seeds']} | {v['twin_reward']:.4f} | {v['live_reward']:.4f} | {shown} |")
    for label, fields in per_student.items():
        for name, v in fields.items():
            print(f"{name}: mean |{label} - live| {v['mean_abs_diff']:.4f}, max {v['max_abs_diff']:.4f}, "
                  f"Kendall tau {v['kendall_tau']:.3f} over {len(unique)} students")
    print(f"agents ranked by mean reward, twin vs live: Kendall tau {ranking_tau}; written to {out}")


if __name__ == "__main__":
    main()
