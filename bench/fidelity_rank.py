"""Do the cheap fidelities rank students as a long training does? ResNet-18 students of the shared teacher on the
CIFAR-10 JPEG copy, scored at ``zero``, ``fast`` (and candidate fast recipes) and at a final recipe of at least 5
epochs on the whole training split; the Kendall tau between their validation accuracies.

Students: every uniform width of the action space, masked random choices, and (``--table``) the accuracy/latency
Pareto front of a benchmark table's ``zero`` rows (what a search finds), spread over the params range; ``--reuse``
adds the searched and uniform students of ``bench/search_vs_baselines.py``, whose final accuracies (same recipe,
same training code) are read from its results instead of trained again. Students run cheapest (FLOPs) first. Every
evaluation goes through one results store (``--out/results.sqlite``), so a killed run continues where it stopped;
the fidelities run in order (zero, fast, candidates, final) so cheap results come first.

    .venv/bin/python bench/fidelity_rank.py --widths 0.25 0.3 0.4 0.5 0.6 0.7 --random 4 --pareto 7 --max-flops 0.5 \
        --table ddc_env/tables/resnet18_cifar10.json.gz --reuse bench/results/search_vs_baselines.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from scipy.stats import bootstrap, kendalltau, spearmanr

from ddc_env.arch import NetSpec, choices_from_widths, uniform_choices
from ddc_env.paths import atomic_write_text
from ddc_env.scoring import CachedScorer, LiveScorer
from ddc_env.store import ResultsStore
from ddc_env.students import random_students
from ddc_env.tables import BenchTable
from ddc_env.task import Task, TaskConfig, load_task

SHARED = Path(__file__).resolve().parents[2] / "shared"
FINAL = {"name": "standard", "epochs": 5}  # 5 epochs over all 45,000 training images, 5 cached views, all val


def students(task: Task, widths: list[float], n_random: int, table: Path | None, pareto: int
             ) -> list[tuple[str, NetSpec]]:
    """Uniform ``widths``, ``n_random`` masked random students and up to ``pareto`` students of a table's
    zero-fidelity accuracy/latency front, deduplicated, as (kind, spec)."""
    out: dict[str, tuple[str, NetSpec]] = {}
    for w in widths:
        spec = task.student_spec(uniform_choices(task.teacher_spec, w))
        out.setdefault(spec.hash(), ("uniform", spec))
    for _, spec in itertools.islice(random_students(task, seed=1), n_random):
        out.setdefault(spec.hash(), ("random", spec))
    if table is not None:
        t = BenchTable.load(table)
        rows = [r for r in t.rows if r["fidelity"] == "zero" and r["status"] == "ok"]
        front = [r for r in rows if not any(o["val_acc"] >= r["val_acc"] and o["latency_ms"] < r["latency_ms"]
                                            for o in rows)]
        front.sort(key=lambda r: r["latency_ms"])
        step = max(1, len(front) // pareto)
        for r in front[::step][:pareto]:
            spec = t.spec(r["spec_hash"])
            out.setdefault(spec.hash(), ("searched", spec))
    return list(out.values())


def reused_finals(task: Task, path: Path) -> tuple[list[tuple[str, NetSpec]], dict[str, float]]:
    """The searched and uniform students of a ``search_vs_baselines.py`` results file, and their final accuracies
    (spec hash -> val acc). Its L1-pruned students are not in the action space and are left out."""
    results = json.loads(path.read_text())
    chosen: list[tuple[str, NetSpec]] = []
    final: dict[str, float] = {}
    for entry in results["seeds"].values():
        for row in entry["rows"]:
            if row["method"].startswith("searched"):
                kind, spec = "searched", task.student_spec(choices_from_widths(entry["choices"]))
                if spec.hash() != entry["twin_record"]["spec_hash"]:
                    raise ValueError(f"{path}: seed choices do not rebuild spec {entry['twin_record']['spec_hash']}")
            elif row["method"].startswith("uniform"):
                width = float(row["method"].split()[1])
                kind, spec = "uniform", task.student_spec(uniform_choices(task.teacher_spec, width))
            else:
                continue
            chosen.append((kind, spec))
            final[spec.hash()] = row["val_acc"]
    return chosen, final


def tau_interval(x: list[float], y: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of Kendall's tau, resampling students (seeded)."""
    res = bootstrap((x, y), lambda a, b: kendalltau(a, b).statistic, paired=True, vectorized=False,
                    n_resamples=resamples, method="percentile", random_state=0)
    return res.confidence_interval.low, res.confidence_interval.high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=Path("runs/fidelity_rank"))
    parser.add_argument("--widths", type=float, nargs="+", help="uniform widths (default: all but the teacher's)")
    parser.add_argument("--random", type=int, default=10, help="masked random students")
    parser.add_argument("--table", type=Path, help="a benchmark table whose zero-fidelity front adds searched students")
    parser.add_argument("--pareto", type=int, default=6, help="students taken from the table's front")
    parser.add_argument("--max-flops", type=float, default=1.0, help="leave out students above this FLOPs ratio")
    parser.add_argument("--reuse", type=Path, help="a search_vs_baselines.py results.json whose students (and final "
                        "accuracies) to add")
    parser.add_argument("--candidate", action="append", default=[], metavar="JSON",
                        help='a fast recipe to compare, e.g. \'{"name": "fast", "epochs": 3}\' (repeatable)')
    parser.add_argument("--skip-final", action="store_true", help="only the cheap fidelities")
    args = parser.parse_args()
    task = load_task(TaskConfig(model="resnet18", teacher=str(args.shared / "teachers" / "resnet18_cifar10jpeg.pt"),
                                dataset="cifar10_jpeg", data_dir=str(args.shared / "data" / "cifar10_jpeg")))
    chosen = students(task, args.widths or task.width_choices[:-1], args.random, args.table, args.pareto)
    extra, reused = reused_finals(task, args.reuse) if args.reuse is not None else ([], {})
    unique: dict[str, tuple[str, NetSpec]] = {}
    for kind, spec in chosen + extra:
        unique.setdefault(spec.hash(), (kind, spec))
    chosen = [(kind, spec) for kind, spec in unique.values() if spec.flops <= args.max_flops * task.teacher_spec.flops]
    chosen.sort(key=lambda kind_spec: kind_spec[1].flops)
    store = ResultsStore(args.out / "results.sqlite")
    recipes: dict[str, Any] = {"zero": "zero", "fast": "fast"}
    recipes.update({f"candidate {i}": json.loads(c) for i, c in enumerate(args.candidate)})
    if not args.skip_final:
        recipes["final"] = FINAL
    acc: dict[str, dict[str, float]] = {name: {} for name in recipes}
    seconds: dict[str, float] = {name: 0.0 for name in recipes}
    trained: dict[str, int] = {name: 0 for name in recipes}
    print(f"{len(chosen)} students: " + ", ".join(f"{k} {sum(1 for kk, _ in chosen if kk == k)}"
                                                    for k in ("uniform", "random", "searched")), flush=True)
    for name, recipe in recipes.items():
        scorer = CachedScorer(LiveScorer(task, recipe, latency="model", device="cpu"), store, method=f"rank:{name}")
        start = time.perf_counter()
        for i, (kind, spec) in enumerate(chosen):
            params = spec.params / task.teacher_spec.params
            if name == "final" and spec.hash() in reused:
                acc[name][spec.hash()] = reused[spec.hash()]
                print(f"{name} {i + 1}/{len(chosen)} {kind} params {params:.3f} val {reused[spec.hash()]:.4f} "
                      f"(reused from {args.reuse})", flush=True)
                continue
            record = scorer.score(spec)
            acc[name][spec.hash()] = record["val_acc"]
            seconds[name] += record["eval_seconds"]
            trained[name] += 1
            cost = "cached" if record["cache_hit"] else f"{record['eval_seconds']:.0f} s"
            print(f"{name} {i + 1}/{len(chosen)} {kind} params {params:.3f} val {record['val_acc']:.4f} ({cost})",
                  flush=True)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    names = list(recipes)
    hashes = [spec.hash() for _, spec in chosen]
    ref = "final" if "final" in recipes else "fast"
    lines = [f"| fidelity | KD recipe | mean s per student | Kendall tau vs {ref} [95% CI] | Kendall tau vs fast | "
             f"Spearman vs {ref} |", "|---|---|---|---|---|---|"]
    for name in names:
        x, y, f = ([acc[n][h] for h in hashes] for n in (name, ref, "fast"))
        low, high = tau_interval(x, y)
        mean_seconds = seconds[name] / max(1, trained[name])
        lines.append(f"| {name} | `{json.dumps(recipes[name])}` | {mean_seconds:.1f} | "
                     f"{kendalltau(x, y).statistic:.3f} [{low:.2f}, {high:.2f}] | {kendalltau(x, f).statistic:.3f} | "
                     f"{spearmanr(x, y).statistic:.3f} |")
    rows = [{"kind": kind, "spec_hash": spec.hash(), "params_ratio": spec.params / task.teacher_spec.params,
             "flops_ratio": spec.flops / task.teacher_spec.flops, "final_reused": spec.hash() in reused,
             **{name: acc[name][spec.hash()] for name in names}} for kind, spec in chosen]
    lines += ["", "| students | n | units removed (mean) | params ratio (mean) | "
              + " | ".join(f"{name} val (mean)" for name in names) + " |", "|---|---|---|---|" + "---|" * len(names)]
    for kind in ("uniform", "random", "searched"):
        group = [spec for k, spec in chosen if k == kind]
        if group:
            removed = sum(len(task.teacher_spec.units) - len(spec.units) for spec in group) / len(group)
            params = sum(spec.params for spec in group) / len(group) / task.teacher_spec.params
            means = " | ".join(f"{sum(acc[name][spec.hash()] for spec in group) / len(group):.4f}" for name in names)
            lines.append(f"| {kind} | {len(group)} | {removed:.1f} | {params:.3f} | {means} |")
    table = "\n".join(lines)
    command = " ".join([".venv/bin/python bench/fidelity_rank.py", *sys.argv[1:]])
    atomic_write_text(args.out / "results.json", json.dumps({"command": command, "recipes": recipes, "rows": rows,
                                                            "table": table}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
