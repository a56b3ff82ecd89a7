"""How far a surrogate twin's accuracy is off on the students agents reach: the students a ``ddc table extend`` added
(the board's best students, scored live) predicted by the surrogate fit on the table *without* them, against their
live rows. Prints the mean signed error (surrogate - live), the mean absolute error and Kendall tau. Then whether
a refit would fix it, out of fold: the added students split into ``--folds`` folds, each predicted by a surrogate
fit on the table plus the other folds' added students. Surrogates are fit in a temporary ``$DDC_HOME``.

    .venv/bin/python bench/surrogate_bias.py resnet18_cifar10 runs/resnet18_cifar10_extended.json.gz
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

import numpy as np
from scipy.stats import kendalltau

from ddc_env.scoring.surrogate import SurrogateScorer
from ddc_env.tables import BenchTable
from ddc_env.train import compute_signature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="the table the surrogate is fit on (a shipped name or a file)")
    parser.add_argument("extended", help="that table after ddc table extend")
    parser.add_argument("--folds", type=int, default=5, help="folds of the refit check (default 5)")
    args = parser.parse_args()
    os.environ["DDC_HOME"] = tempfile.mkdtemp(prefix="surrogate_bias_")  # fitted surrogates stay out of the user's
    table, extended = BenchTable.load(args.table), BenchTable.load(args.extended)
    print(f"machine: {compute_signature('cpu')}")
    for extension in extended.meta.get("extensions", []):
        fidelity = extension["fidelity"]
        hashes = extension["spec_hashes"][fidelity]
        live = np.array([np.mean([r["val_acc"] for r in extended.rows_for(h, fidelity)]) for h in hashes])
        records = SurrogateScorer(table, fidelity).evaluate_many([extended.spec(h) for h in hashes])
        predicted = np.array([r["val_acc"] for r in records])
        error = predicted - live
        print(f"{extension['command']}\n  {len(hashes)} students at {fidelity}, scored on "
              f"{extension['compute'][fidelity]}: live val acc {live.min():.3f}-{live.max():.3f} (mean {live.mean():.4f})"
              f"\n  surrogate of {args.table} ({len(table.spec_hashes(fidelity))} students) - live: mean "
              f"{error.mean():+.4f}, mean |error| {np.abs(error).mean():.4f}, max {error.max():+.4f}; Kendall tau "
              f"{kendalltau(predicted, live).statistic:.3f}")
        refit = np.zeros_like(live)
        folds = np.random.default_rng(0).permutation(len(hashes)) % args.folds
        for k in range(args.folds):
            held = [h for h, f in zip(hashes, folds) if f == k]  # in the order of hashes, as refit's indices
            rows = [r for r in extended.rows if not (r["fidelity"] == fidelity and r["spec_hash"] in set(held))]
            fold_table = dataclasses.replace(extended, rows=rows)
            records = SurrogateScorer(fold_table, fidelity).evaluate_many([extended.spec(h) for h in held])
            refit[[i for i, f in enumerate(folds) if f == k]] = [r["val_acc"] for r in records]
        error = refit - live
        print(f"  refit on the table + the other folds' added students ({args.folds} folds) - live: mean "
              f"{error.mean():+.4f}, mean |error| {np.abs(error).mean():.4f}, max {error.max():+.4f}; Kendall tau "
              f"{kendalltau(refit, live).statistic:.3f}")


if __name__ == "__main__":
    main()
