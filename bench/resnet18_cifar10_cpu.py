"""CPU-scale results on real data: compress the shared ResNet-18 (CIFAR-10 JPEG copy) on 2 CPU cores.

1. An RL search (MaskablePPO by default) at ``fast`` fidelity with the DDC reward; its time term is the FLOPs
   ratio (deterministic while other jobs share the machine; real latency is measured in the final table).
2. Equal compute for the final models: the RL search's best student, the uniform-width student with the
   closest params ratio, and L1 structured pruning to the same params ratio each get the same KD budget of
   ``--final-epochs`` epochs over the whole training split (L1 pruning spends ``--prune-steps`` of them as one
   epoch after each pruning step, the rest after the last).
3. The DDC-style table: teacher and final models, val accuracy (5,000 images the teacher never trained on),
   test accuracy (10,000; computed here only, for the final models), params ratio, CPU latency ratio at
   batch 1 measured side by side in rounds (median of round medians), evaluations and wall time.

    PYTHONPATH=. python bench/resnet18_cifar10_cpu.py --out runs/resnet18_cpu

Writes the search run folder (``search/``, usable with ``ddc report``), the final models, ``results.json`` and
``results.md`` under ``--out``. Numbers are on the CIFAR-10 JPEG copy in ../shared, not official CIFAR-10.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
from torch import nn

from agents.search import SearchConfig, run_search
from baselines import structured_pruning
from baselines.common import Context
from ddc_env.arch import NetSpec, uniform_choices
from ddc_env.metrics import measure_latency
from ddc_env.paths import atomic_write_text
from ddc_env.report import load_model, measure_test_accuracy

SHARED = Path(__file__).resolve().parents[2] / "shared"
ENV_ID = "DDC-ResNet18-CIFAR10"
WIDTHS = [0.125, 0.25, 0.375, 0.5, 1.0]  # >= 10x fewer params needs thin layers; 1.0 = keep
REWARD = {"name": "ddc", "acc_threshold": 0.85, "time_threshold": 0.15, "params_threshold": 0.1}


def env_kwargs(shared: Path, fidelity: Any, seed: int) -> dict[str, Any]:
    return {"teacher": str(shared / "teachers" / "resnet18_cifar10jpeg.pt"), "dataset": "cifar10_jpeg",
            "data_dir": str(shared / "data" / "cifar10_jpeg"), "fidelity": fidelity, "reward": REWARD,
            "latency": "flops", "width_choices": WIDTHS, "device": "cpu", "seed": seed}


def search(args: argparse.Namespace) -> dict[str, Any]:
    config = SearchConfig(env_id=ENV_ID, env_kwargs=env_kwargs(args.shared, "fast", args.seed), agent=args.agent,
                          agent_kwargs={"episodes_per_update": 4, "n_epochs": 8, "learning_rate": 1e-3,
                                        "ent_coef": 0.01, "gamma": 1.0} if args.agent == "maskable_ppo" else {},
                          episodes=args.episodes, seed=args.seed)
    return run_search(config, args.out / "search", progress=True)


def interleaved_latency(models: dict[str, nn.Module], shape: tuple[int, ...], rounds: int) -> dict[str, float]:
    """Median over ``rounds`` of each model's median batch latency, models measured in turn each round."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, net in models.items():
            times[name].append(measure_latency(net, shape, device="cpu", repeats=30).median_ms)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/resnet18_cifar10_cpu"))
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared folder (teachers/, data/)")
    parser.add_argument("--agent", default="maskable_ppo")
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--final-epochs", type=int, default=20)
    parser.add_argument("--final-views", type=int, default=3, help="cached augmentation views for the final KD")
    parser.add_argument("--final-train-samples", type=int, default=None, help="cap the final KD's training "
                                                                              "images (default: all 45,000)")
    parser.add_argument("--prune-steps", type=int, default=4)
    parser.add_argument("--latency-rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    summary = search(args)
    timings["search"] = time.perf_counter() - t0
    best = summary["best_info"]
    best_spec = NetSpec.from_dict(best["spec"])
    print(f"search: {summary['episodes']} episodes, {summary['evaluations']} students trained, "
          f"{timings['search']:.0f} s; best params ratio {best['param_ratio']:.4f}, val acc {best['val_acc']:.4f}",
          flush=True)

    final_fidelity = {"name": "fast", "epochs": args.final_epochs, "train_samples": args.final_train_samples,
                      "val_samples": None, "views": args.final_views}
    env = gym.make(ENV_ID, **env_kwargs(args.shared, final_fidelity, args.seed)).unwrapped
    ctx = Context(env, args.out / "final", "final", progress=True)
    t0 = time.perf_counter()
    ctx.evaluator.teacher_views()
    timings["final teacher views"] = time.perf_counter() - t0

    models: dict[str, tuple[nn.Module, NetSpec | None]] = {"teacher": (ctx.teacher_net, ctx.teacher_spec)}
    facts: dict[str, dict[str, Any]] = {"teacher": {"evaluations": 0, "seconds": 0.0}}

    t0 = time.perf_counter()
    net, _ = ctx.evaluator.train_student(best_spec)
    models[f"RL ({args.agent}) best"] = (net, best_spec)
    facts[f"RL ({args.agent}) best"] = {"evaluations": summary["evaluations"],
                                        "seconds": timings["search"] + time.perf_counter() - t0}
    print(f"final KD of the RL best: {time.perf_counter() - t0:.0f} s", flush=True)

    target = best_spec.params / ctx.teacher_spec.params
    candidates = [(w / 100, env.student_spec(uniform_choices(ctx.teacher_spec, w / 100))) for w in range(5, 101)]
    width, uniform_spec = min(candidates, key=lambda c: abs(c[1].params / ctx.teacher_spec.params - target))
    t0 = time.perf_counter()
    net, _ = ctx.evaluator.train_student(uniform_spec)
    models[f"uniform width {width:g}"] = (net, uniform_spec)
    facts[f"uniform width {width:g}"] = {"evaluations": 1, "seconds": time.perf_counter() - t0}
    print(f"final KD of uniform width {width:g}: {time.perf_counter() - t0:.0f} s", flush=True)

    t0 = time.perf_counter()
    structured_pruning.run(ctx, ranking="l1", allocation="global", target="params", ratio=target,
                           steps=args.prune_steps, epochs=1, final_epochs=args.final_epochs - args.prune_steps,
                           ranking_images=1024)
    pruned = ctx.results[-1]
    pruned_net, pruned_spec = load_model(ctx.run_dir, pruned["model"])
    models["L1 structured pruning"] = (ctx.precision.prepare(pruned_net.to(ctx.device)), pruned_spec)
    facts["L1 structured pruning"] = {"evaluations": args.prune_steps, "seconds": time.perf_counter() - t0}
    print(f"L1 pruning + KD: {time.perf_counter() - t0:.0f} s", flush=True)

    shape = (1, *ctx.evaluator.input_shape)
    latency = interleaved_latency({k: m for k, (m, _) in models.items()}, shape, args.latency_rounds)
    rows = []
    teacher_params = ctx.teacher_spec.params
    for name, (net, spec) in models.items():
        rows.append({"method": name, "val_acc": ctx.evaluator.accuracy(net, teacher=name == "teacher"),
                     "test_acc": measure_test_accuracy(env, net, teacher=name == "teacher"), "params": spec.params,
                     "param_ratio": spec.params / teacher_params, "flop_ratio": spec.flops / ctx.teacher_spec.flops,
                     "latency_ms": latency[name], "latency_ratio": latency[name] / latency["teacher"],
                     **facts[name]})
    table = format_table(rows)
    command = "PYTHONPATH=. python bench/resnet18_cifar10_cpu.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "shared") and v is not None)
    result = {"command": command, "rows": rows, "timings": timings, "search_summary": str(args.out / "search"),
              "best_choices": best.get("choices"), "reward": REWARD, "widths": WIDTHS,
              "final_fidelity": final_fidelity}
    atomic_write_text(args.out / "results.json", json.dumps(result, indent=1, default=str))
    atomic_write_text(args.out / "results.md", f"{table}\n\n`{command}`\n")
    print(table)
    print(command)


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | val acc | test acc | params | params ratio (x fewer) | FLOPs ratio | CPU latency ms "
             "(ratio) | evaluations | wall time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | {r['params']:,} | "
                     f"{r['param_ratio']:.4f} ({1 / r['param_ratio']:.1f}x) | {r['flop_ratio']:.4f} | "
                     f"{r['latency_ms']:.2f} ({r['latency_ratio']:.3f}) | {r['evaluations']} | "
                     f"{r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
