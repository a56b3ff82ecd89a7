"""``ddc baseline``: a compression baseline on a DDC env's teacher and data, into a run folder
(:func:`ddc_env.lab.baseline.run_baseline`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..baselines import BASELINES
from ..lab.baseline import load_baseline_config, run_baseline
from ..lab.runs import default_run_dir
from .usage import usage_error

__all__ = ["add_command"]


def _baseline(args: argparse.Namespace) -> int:
    try:
        config = load_baseline_config(args.config, args.name, args.set)
    except ValueError as e:
        raise usage_error("ddc baseline", e) from None
    out = Path(args.out) if args.out else default_run_dir(args.config, args.name)
    summary = run_baseline(config, out, progress=not args.quiet)
    for r in summary["results"]:
        rec = r["record"]
        latency = f", latency ratio {rec['latency_ratio']:.3f}" if rec.get("latency_ratio") is not None else ""
        print(f"{r['label']}: val_acc {rec['val_acc']:.4f} (teacher {rec['teacher_val_acc']:.4f}), params ratio "
              f"{rec['param_ratio']:.4f}, size {rec['size_bytes'] / 1e6:.3f} MB (ratio {rec['size_ratio']:.4f})"
              f"{latency}")
    print(f"{summary['evaluations']} models measured, {summary['wall_seconds']:.0f} s; run folder: {out.resolve()}")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc baseline``."""
    p = commands.add_parser(
        "baseline", help="run a compression baseline on a DDC env's teacher and data",
        description="Compress the teacher of a DDC env with a baseline (same teacher, data split, fidelity and "
                    "metrics as the env); writes a run folder (config, results store, final models, summary) "
                    "that ddc report compares with searches.",
        epilog="baselines:\n" + "\n".join(f"  {name:<18}{entry.summary}" for name, entry in BASELINES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(BASELINES), metavar="NAME", help="the baseline (listed below)")
    p.add_argument("--config", required=True, help="YAML baselines config (see configs/baselines/*.yaml)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<config>-<name>-<time>)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values with dotted keys, e.g. baselines.l1_pruning.ratio=0.2")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_baseline)
