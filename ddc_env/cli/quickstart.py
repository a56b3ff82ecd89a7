"""``ddc quickstart``: the whole loop offline on the MNIST sample shipped in the package
(:func:`ddc_env.lab.quickstart.run_quickstart`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..lab.quickstart import run_quickstart
from .argtypes import positive_int

__all__ = ["add_command"]


def _quickstart(args: argparse.Namespace) -> int:
    report = run_quickstart(args.out, episodes=args.episodes, seed=args.seed, fidelity=args.fidelity,
                            teacher_epochs=args.teacher_epochs, agent=args.agent, latency=args.latency,
                            progress=not args.quiet)
    print(report.markdown)
    print("written:\n" + "\n".join(f"  {p.resolve()}" for p in report.paths))
    print(f"run folders: {Path(args.out).resolve()}/{{search,uniform,l1_pruning}} (ddc report / ddc export)")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc quickstart``."""
    p = commands.add_parser("quickstart", help="teacher, RL search, baselines and report on the packaged MNIST "
                                               "sample",
                            description="Train (or reuse) a LeNet-5 teacher on the MNIST sample shipped in the "
                                        "package, search its students with an RL agent, run the uniform-width and "
                                        "L1-pruning baselines, and report a table and plots; offline.")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart; an earlier "
                                                            "quickstart there is replaced)")
    p.add_argument("--episodes", type=positive_int, default=60, help="search episodes (default: 60)")
    p.add_argument("--agent", default="maskable_ppo", help="search agent (default: maskable_ppo; see ddc search)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", default="fast", help="student training fidelity (default: fast)")
    p.add_argument("--teacher-epochs", type=positive_int, default=8, help="teacher epochs (default: 8)")
    p.add_argument("--latency", choices=("model", "measured", "flops"), default="model",
                   help="the reward's time term: the latency table's (default, the same in every run), measured CPU "
                        "latency, or the FLOPs ratio")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_quickstart)
