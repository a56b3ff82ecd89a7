"""Do the cheap fidelities rank students as a long training does? ResNet-18 students of the shared teacher on the
CIFAR-10 JPEG copy, scored at ``zero``, ``fast`` (and candidate fast recipes) and at a final recipe of at least 5
epochs on the whole training split; the Kendall tau between their validation accuracies.

Students: every uniform width of the action space, masked random choices, and (``--table``) the accuracy/latency
Pareto front of a benchmark table's ``zero`` rows (what a search finds), spread over the params range. Every
evaluation goes through one results store (``--out/results.sqlite``), so a killed run continues where it stopped;
the fidelities run in order (zero, fast, candidates, final) so cheap results come first.

    .venv/bin/python bench/fidelity_rank.py --random 10 --table ddc_env/tables/resnet18_cifar10.json.gz
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

from scipy.stats import kendalltau, spearmanr

from ddc_env.arch import NetSpec, uniform_choices
from ddc_env.paths import atomic_write_text
from ddc_env.scoring import CachedScorer, LiveScorer
from ddc_env.store import ResultsStore
from ddc_env.tables import BenchTable, random_students
from ddc_env.task import Task, TaskConfig, load_task

SHARED = Path(__file__).resolve().parents[2] / "shared"
FINAL = {"name": "standard", "epochs": 5}  # 5 epochs over all 45,000 training images, 5 cached views, all val
CANDIDATES: dict[str, dict[str, Any]] = {}  # fast recipes to compare with the final ranking (filled by --candidate)


def students(task: Task, n_random: int, table: Path | None, pareto: int) -> list[tuple[str, NetSpec]]:
    """Uniform widths, ``n_random`` masked random students and up to ``pareto`` students of a table's zero-fidelity
    accuracy/latency front, deduplicated, as (kind, spec)."""
    out: dict[str, tuple[str, NetSpec]] = {}
    for w in task.width_choices[:-1]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=Path("runs/fidelity_rank"))
    parser.add_argument("--random", type=int, default=10, help="masked random students")
    parser.add_argument("--table", type=Path, help="a benchmark table whose zero-fidelity front adds searched students")
    parser.add_argument("--pareto", type=int, default=6, help="students taken from the table's front")
    parser.add_argument("--candidate", action="append", default=[], metavar="JSON",
                        help='a fast recipe to compare, e.g. \'{"name": "fast", "epochs": 3}\' (repeatable)')
    parser.add_argument("--skip-final", action="store_true", help="only the cheap fidelities")
    args = parser.parse_args()
    task = load_task(TaskConfig(model="resnet18", teacher=str(args.shared / "teachers" / "resnet18_cifar10jpeg.pt"),
                                dataset="cifar10_jpeg", data_dir=str(args.shared / "data" / "cifar10_jpeg")))
    chosen = students(task, args.random, args.table, args.pareto)
    store = ResultsStore(args.out / "results.sqlite")
    recipes: dict[str, Any] = {"zero": "zero", "fast": "fast"}
    recipes.update({f"candidate {i}": json.loads(c) for i, c in enumerate(args.candidate)})
    if not args.skip_final:
        recipes["final"] = FINAL
    acc: dict[str, dict[str, float]] = {name: {} for name in recipes}
    seconds: dict[str, float] = {name: 0.0 for name in recipes}
    print(f"{len(chosen)} students: " + ", ".join(f"{k} {sum(1 for kk, _ in chosen if kk == k)}"
                                                    for k in ("uniform", "random", "searched")), flush=True)
    for name, recipe in recipes.items():
        scorer = CachedScorer(LiveScorer(task, recipe, latency="model", device="cpu"), store, method=f"rank:{name}")
        start = time.perf_counter()
        for i, (kind, spec) in enumerate(chosen):
            record = scorer.score(spec)
            acc[name][spec.hash()] = record["val_acc"]
            seconds[name] += record["eval_seconds"]
            cost = "cached" if record["cache_hit"] else f"{record['eval_seconds']:.0f} s"
            print(f"{name} {i + 1}/{len(chosen)} {kind} params {record['param_ratio']:.3f} val {record['val_acc']:.4f}"
                  f" ({cost})", flush=True)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    names = list(recipes)
    hashes = [spec.hash() for _, spec in chosen]
    lines = ["| fidelity | KD recipe | mean s per student | Kendall tau vs final | Spearman vs final |",
             "|---|---|---|---|---|"]
    ref = "final" if "final" in recipes else "fast"
    for name in names:
        x, y = [acc[name][h] for h in hashes], [acc[ref][h] for h in hashes]
        tau, rho = kendalltau(x, y).statistic, spearmanr(x, y).statistic
        lines.append(f"| {name} | `{json.dumps(recipes[name])}` | {seconds[name] / len(hashes):.1f} | {tau:.3f} | "
                     f"{rho:.3f} |")
    rows = [{"kind": kind, "spec_hash": spec.hash(), "params_ratio": spec.params / task.teacher_spec.params,
             **{name: acc[name][spec.hash()] for name in names}} for kind, spec in chosen]
    table = "\n".join(lines)
    atomic_write_text(args.out / "results.json", json.dumps({"recipes": recipes, "rows": rows, "table": table},
                                                           indent=1))
    print(table)


if __name__ == "__main__":
    main()
