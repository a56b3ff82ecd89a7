"""How far a surrogate twin's accuracy is off on the students agents reach: the students a ``ddc table extend`` added
(the board's best students, scored live) predicted by the surrogate fit on the table *without* them, against their
live rows. Prints the mean signed error (surrogate - live), the mean absolute error and Kendall tau.

    .venv/bin/python bench/surrogate_bias.py resnet18_cifar10 runs/resnet18_cifar10_extended.json.gz
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import kendalltau

from ddc_env.scoring.surrogate import SurrogateScorer
from ddc_env.tables import BenchTable
from ddc_env.train import compute_signature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="the table the surrogate is fit on (a shipped name or a file)")
    parser.add_argument("extended", help="that table after ddc table extend")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
