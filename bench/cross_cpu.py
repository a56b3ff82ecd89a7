"""How far a twin's accuracies move on another CPU: re-score rows of a shipped benchmark table with the live scorer on
this machine (its CPU, its precision: bf16 autocast where the CPU has AVX512-BF16/AMX, fp32 elsewhere) and compare
with the table, built on the machine its ``meta["device_signature"]`` names.

Prints the mean and largest |difference| of validation accuracy, the Kendall tau between the table's and this
machine's accuracies, and, for scale, the table's own training-seed noise at that fidelity (when it has two seeds).
The same teacher, data, fidelity, seed and thread count as the table's build; only the machine differs.

    .venv/bin/python bench/cross_cpu.py --table lenet5_mnist --fidelity fast --rows 50
    .venv/bin/python bench/cross_cpu.py --table resnet18_cifar10 --fidelity zero --rows 20

Writes ``bench/results/cross_cpu_<table>_<fidelity>_<precision>.json`` (rows, summary, both machines).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from scipy.stats import kendalltau

from ddc_env.paths import atomic_write_text
from ddc_env.scoring import LiveScorer
from ddc_env.tables import BenchTable, live_task
from ddc_env.train import compute_signature

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default="lenet5_mnist")
    parser.add_argument("--fidelity", default=None, help="default: the table's default fidelity")
    parser.add_argument("--rows", type=int, default=50, help="how many students (the table's first ones)")
    args = parser.parse_args()

    table = BenchTable.load(args.table)
    fidelity = args.fidelity or table.default_fidelity
    here = compute_signature("cpu", table.fidelity_amp(fidelity))
    print(f"table {table.name} at {fidelity}: built on {table.compute(fidelity)}")
    print(f"this machine: {here}")
    task = live_task(table)
    live = LiveScorer(task, fidelity, latency="model", latency_model=table.latency_model(), device="cpu",
                      threads=table.meta["threads"])
    rows, start = [], time.perf_counter()
    for spec_hash in table.spec_hashes(fidelity)[:args.rows]:
        row = table.rows_for(spec_hash, fidelity)[0]
        record = live.evaluate(table.spec(spec_hash))
        rows.append({"spec_hash": spec_hash, "table": row["val_acc"], "here": record["val_acc"],
                     "status": [row["status"], record["status"]]})
        print(f"{len(rows):3d} {spec_hash} table {row['val_acc']:.5f} here {record['val_acc']:.5f} "
              f"diff {record['val_acc'] - row['val_acc']:+.5f}", flush=True)
    ok = [r for r in rows if r["status"] == ["ok", "ok"]]
    diffs = [abs(r["here"] - r["table"]) for r in ok]
    tau = kendalltau([r["table"] for r in ok], [r["here"] for r in ok]).statistic
    summary = {"students": len(ok), "mean_abs_diff": statistics.fmean(diffs), "max_abs_diff": max(diffs),
               "equal": sum(d == 0.0 for d in diffs), "kendall_tau": tau,
               "table_seed_noise": table.seed_noise(fidelity), "seconds": time.perf_counter() - start}
    print(json.dumps(summary, indent=2))
    out = RESULTS / f"cross_cpu_{table.name}_{fidelity}_{here['precision']}.json"
    command = f".venv/bin/python bench/cross_cpu.py --table {args.table} --fidelity {fidelity} --rows {args.rows}"
    atomic_write_text(out, json.dumps({"command": command, "table_compute": table.compute(fidelity),
                                       "this_machine": here, "summary": summary, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
