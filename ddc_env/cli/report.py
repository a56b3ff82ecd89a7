"""``ddc report``: plots and a results table over search and baseline run folders
(:func:`ddc_env.lab.report.make_report`)."""
from __future__ import annotations

import argparse

from ..lab.report import make_report, read_run
from .usage import usage_error

__all__ = ["add_command"]


def _report(args: argparse.Namespace) -> int:
    for path in args.run_dirs:  # every folder is checked before any work
        try:
            read_run(path)
        except ValueError as e:
            raise usage_error("ddc report", e) from None
    report = make_report(args.run_dirs, args.out, test=not args.no_test)
    print(report.markdown)
    print("wrote " + ", ".join(str(p) for p in report.paths))
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc report``."""
    p = commands.add_parser(
        "report", help="plots and a results table over search and baseline run folders",
        description="Compare search and baseline run folders: curves.png (reward, accuracy, params and latency "
                    "ratios per episode of each search), pareto.png (accuracy against params and latency ratios "
                    "of every evaluated student, final models marked) and report.md / report.json (teacher, each "
                    "search's best student and each baseline's final models, with test accuracy measured now).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders of ddc search or ddc baseline")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/report of the first run)")
    p.add_argument("--no-test", action="store_true", help="skip measuring test accuracy (faster; shown as -)")
    p.set_defaults(func=_report)
