"""How much does a batch-1 latency comparison depend on how it is timed? For one seed of an ``earn_its_keep``
results file: every reference timed in pairs with the searched student (how the references are matched), and all
rows timed together with the teacher (the cell's last measurement), each cold (a round right after the other
networks ran) and warm (one untimed call before each round), ``--repeats`` times. Prints each row's time as a
ratio to the searched student's in the same rounds (randomly initialised nets: latency does not depend on the
weights), and the CPU and precision it ran with (fp32 timing; one thread).

    .venv/bin/python bench/latency_conditions.py bench/results/earn_its_keep_vgg16-0.15-fine.json --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from earn_its_keep import DATA, TASKS, joint_latency, pruning_plans, recorded_spec

from ddc_env.arch import build
from ddc_env.latency import LatencyProtocol, measure_interleaved, timing_copy
from ddc_env.scoring import LiveScorer
from ddc_env.task import TaskConfig, load_task
from ddc_env.train import compute_signature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="an earn_its_keep results.json")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--rounds", type=int, default=61)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    entry = results["seeds"].get(args.seed)
    if entry is None:
        sys.exit(f"{args.results} has no seed {args.seed}")
    model = next((m for m in TASKS if f"--task {m} " in results["command"]), None)
    if model is None:
        sys.exit(f"cannot tell the task from the command {results['command']!r}")
    print(f"machine: {compute_signature('cpu')}", flush=True)
    task = load_task(TaskConfig(model=model, teacher=str(TASKS[model][1]), dataset="cifar10_jpeg", data_dir=str(DATA)))
    teacher = timing_copy(LiveScorer(task, "zero", latency="model", device="cpu").distiller.teacher)
    plan_at = pruning_plans(task, teacher)
    specs = {r["method"]: recorded_spec(r, entry, task, plan_at) for r in entry["rows"]}
    searched = next((name for name in specs if name.startswith("searched")), None)
    if searched is None:
        sys.exit(f"seed {args.seed} has no searched student to compare with")
    nets = {name: timing_copy(build(spec)) for name, spec in specs.items()}
    protocol = LatencyProtocol(rounds=args.rounds)
    references = [name for name in specs if name not in ("teacher", searched)]
    print(f"time / the searched student's time in the same rounds ({args.rounds} rounds each):")
    for repeat in range(args.repeats):
        together = joint_latency(specs, task.input_shape, args.rounds)  # ratios to the teacher, cold and warm
        for warm, key in ((0, "ratios"), (1, "warm_ratios")):
            condition = "warm" if warm else "cold"
            for name in references:
                (searched_ms, _), (ms, _) = measure_interleaved([nets[searched], nets[name]], task.input_shape,
                                                                protocol, warm)
                print(f"  repeat {repeat} {condition}: {name}: in pairs {ms / searched_ms:.3f}, all rows together "
                      f"{together[key][name] / together[key][searched]:.3f}", flush=True)
            print(f"  repeat {repeat} {condition}: searched / teacher, all rows together "
                  f"{together[key][searched]:.3f}", flush=True)


if __name__ == "__main__":
    main()
