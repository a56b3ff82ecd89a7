"""Does the search earn its keep at CPU scale? ResNet-18 (the shared teacher, CIFAR-10 JPEG copy): an agent searches
the benchmark twin for the most accurate student under a latency budget; then the searched student, the uniform-width
student and L1 structured pruning at the same latency each get the same final KD (5 epochs over the whole training
split, inherited from the teacher) and are measured for real: test accuracy, and batch-1 CPU latency timed in
interleaved rounds with the teacher. Repeated over search seeds.

The search's reward asks for latency: ``A/A_t`` within the budget ``T/T_t <= L``, minus ``5 (T/T_t - L)`` above it.
The references are matched to each searched student's latency (latency model): the widest uniform width (any width,
not only the action space's) and the L1 FLOPs target (bisection) at or below it.

    .venv/bin/python bench/search_vs_baselines.py --seeds 0 1 2 --latency 0.3 --agent random --episodes 2000

A killed run resumes: seeds already in ``--out/results.json`` are kept, and a student (same spec) or L1 ratio met again
in a later seed reuses its trained model instead of training it again (training is deterministic).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.agents import get_agent
from ddc_env.arch import NetSpec, channel_counts, l1_importance, uniform_choices, with_channels
from ddc_env.baselines.common import Context
from ddc_env.baselines.structured_pruning import allocate_global
from ddc_env.baselines.structured_pruning import run as prune
from ddc_env.lab.report import load_model, measure_test_accuracy
from ddc_env.lab.runs import SearchLog
from ddc_env.latency import LatencyProtocol, measure_paired, timing_copy
from ddc_env.paths import atomic_write_text
from ddc_env.scoring import LiveScorer
from ddc_env.store import ResultsStore
from ddc_env.task import TaskConfig, load_task

SHARED = Path(__file__).resolve().parents[2] / "shared"
TWIN = "DDC-Bench-ResNet18-CIFAR10-v0"
FINAL = {"name": "standard", "epochs": 5}


@dataclass(frozen=True)
class LatencyBudgetAccuracy:
    """Reward: the accuracy ratio within a latency-ratio budget, a linear penalty above it (-1 for a failure)."""

    limit: float
    penalty: float = 5.0

    def __call__(self, record: dict[str, Any]) -> float:
        if record["status"] != "ok":
            return -1.0
        return record["acc_ratio"] - self.penalty * max(0.0, record["latency_ratio"] - self.limit)


def search(agent: str, episodes: int, seed: int, limit: float, fidelity: str) -> dict[str, Any]:
    """The best student an agent finds on the twin (its terminal info)."""
    log = SearchLog(None, episodes, progress=False)
    entry = get_agent(agent)
    entry.runner()(lambda: gym.make(TWIN, fidelity=fidelity, reward=LatencyBudgetAccuracy(limit)),
                   episodes=episodes, log=log, seed=seed, **entry.hyperparams({}))
    return log.best_info


def uniform_at(task, latency, ms: float) -> tuple[float, NetSpec]:
    """The widest uniform width (in steps of 0.01) whose student's model latency is at most ``ms``."""
    best = (0.05, task.student_spec(uniform_choices(task.teacher_spec, 0.05)))
    for w in [k / 100 for k in range(5, 101)]:
        spec = task.student_spec(uniform_choices(task.teacher_spec, w))
        if latency.predict_ms(spec) <= ms:
            best = (w, spec)
    return best


def l1_flops_ratio(task, latency, ms: float) -> float:
    """The FLOPs ratio whose one-shot global L1 allocation on the teacher has a model latency closest to ``ms``."""
    spec = task.student_spec({})
    importance = {k: v.float() / v.float().norm().clamp_min(1e-12)
                  for k, v in l1_importance(task.teacher.net, spec).items()}
    floors = {k: min(task.min_channels, max(1, c // 2)) for k, c in channel_counts(spec).items()}
    low, high = 0.01, 1.0
    for _ in range(12):
        mid = (low + high) / 2
        counts = allocate_global(spec, importance, floors, spec.flops * mid, "flops")
        if latency.predict_ms(with_channels(spec, counts)) <= ms:
            low = mid
        else:
            high = mid
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=Path("runs/search_vs_baselines"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--latency", type=float, default=0.3, help="latency-ratio budget of the search")
    parser.add_argument("--agent", default="random")
    parser.add_argument("--episodes", type=int, default=2000, help="search episodes on the twin")
    parser.add_argument("--fidelity", default="fast", help="the twin's fidelity the search reads")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per model")
    parser.add_argument("--final", type=json.loads, default=FINAL,
                        help=f"the final KD recipe of all three methods (default {json.dumps(FINAL)})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    task = load_task(TaskConfig(model="resnet18", teacher=str(args.shared / "teachers" / "resnet18_cifar10jpeg.pt"),
                                dataset="cifar10_jpeg", data_dir=str(args.shared / "data" / "cifar10_jpeg")))
    scorer = LiveScorer(task, args.final, latency="model", device="cpu")
    latency = scorer.latency_model()
    distiller = scorer.distiller
    path = args.out / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"seeds": {}}
    results.update(command=" ".join([".venv/bin/python bench/search_vs_baselines.py", *sys.argv[1:]]),
                   final=args.final)
    trained: dict[str, tuple[Any, NetSpec]] = {}  # spec hash or L1 ratio -> trained model, reused across seeds

    def final_kd(spec: NetSpec) -> tuple[Any, NetSpec]:
        if spec.hash() not in trained:
            start = time.perf_counter()
            trained[spec.hash()] = distiller.train_student(spec)[0], spec
            print(f"final KD params {spec.params / task.teacher_spec.params:.3f}: "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        return trained[spec.hash()]

    def l1_pruned(ratio: float) -> tuple[Any, NetSpec]:
        key = f"l1 {ratio:.6f}"
        if key not in trained:
            start = time.perf_counter()
            run_dir = args.out / f"l1_{ratio:.6f}"
            with ResultsStore(run_dir / "results.sqlite") as store:
                ctx = Context(task, scorer, store, run_dir / "models", "baseline:l1_pruning", progress=False)
                prune(ctx, ranking="l1", allocation="global", target="flops", ratio=ratio, steps=1,
                      epochs=distiller.fidelity.epochs, final_epochs=0, ranking_images=1024)
            net, spec = load_model(run_dir, ctx.results[-1]["model"])
            trained[key] = distiller.precision.prepare(net.to(distiller.device)), spec
            print(f"L1 pruning + final KD at FLOPs {ratio:.3f}: {time.perf_counter() - start:.0f} s", flush=True)
        return trained[key]

    for seed in args.seeds:
        if str(seed) in results["seeds"]:
            print(f"seed {seed}: done in {path}", flush=True)
            continue
        best = search(args.agent, args.episodes, seed, args.latency, args.fidelity)
        searched = NetSpec.from_dict(best["spec"])
        target_ms = latency.predict_ms(searched)
        width, uniform = uniform_at(task, latency, target_ms)
        ratio = l1_flops_ratio(task, latency, target_ms)
        models: dict[str, tuple[Any, NetSpec | None]] = {
            "teacher": (distiller.teacher, task.teacher_spec),
            f"searched ({args.agent}, seed {seed})": final_kd(searched),
            f"uniform {width:g}": final_kd(uniform),
            f"L1 pruning (FLOPs {ratio:.3f})": l1_pruned(ratio)}
        protocol = LatencyProtocol(rounds=args.rounds)
        teacher_cpu = timing_copy(distiller.teacher)
        rows = []
        for name, (net, spec) in models.items():
            paired = measure_paired(timing_copy(net), teacher_cpu, task.input_shape, protocol)
            rows.append({"method": name, "val_acc": distiller.accuracy(net, teacher=name == "teacher"),
                         "test_acc": measure_test_accuracy(distiller, net, teacher=name == "teacher"),
                         "param_ratio": spec.params / task.teacher_spec.params,
                         "flop_ratio": spec.flops / task.teacher_spec.flops,
                         "model_latency_ratio": latency.predict_ms(spec) / latency.predict_ms(task.teacher_spec),
                         "latency_ms": paired.student_ms, "latency_ratio": paired.ratio,
                         "latency_spread": paired.student_spread_ms / paired.student_ms})
            print(json.dumps(rows[-1]), flush=True)
        results["seeds"][str(seed)] = {"choices": best["choices"], "twin_record": {k: best[k] for k in (
            "val_acc", "latency_ratio", "param_ratio", "spec_hash")}, "rows": rows}
        atomic_write_text(path, json.dumps(results, indent=1, default=str))
    print(table(results))


def table(results: dict[str, Any]) -> str:
    lines = ["| seed | method | val acc | test acc | params ratio | FLOPs ratio | latency ratio (model) | latency "
             "ratio (measured, batch 1) |", "|---|---|---|---|---|---|---|---|"]
    for seed, entry in results["seeds"].items():
        for r in entry["rows"]:
            lines.append(f"| {seed} | {r['method']} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | "
                         f"{r['param_ratio']:.3f} | {r['flop_ratio']:.3f} | {r['model_latency_ratio']:.3f} | "
                         f"{r['latency_ratio']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
