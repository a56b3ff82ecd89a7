"""``ddc search``: a search agent on a DDC env from a YAML config, into a run folder
(:func:`ddc_env.lab.search.run_search`)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..agents import AGENTS
from ..lab.runs import default_run_dir
from ..lab.search import load_config, load_resume_config, read_run_config, run_search
from .argtypes import non_negative_int, positive_int
from .backend_args import add_backend_arguments, backend_given, backend_options
from .usage import usage_error

__all__ = ["add_command"]


def _search(args: argparse.Namespace) -> int:
    if args.resume and args.out is None:
        raise usage_error("ddc search", "--resume needs --out RUN_DIR (the run folder to continue)")
    if not args.resume and args.config is None:
        raise usage_error("ddc search", "the following arguments are required: --config")
    if args.agent is not None and args.agent not in AGENTS:
        raise usage_error("ddc search", f"unknown --agent {args.agent!r}; allowed: {', '.join(AGENTS)}")
    overrides = [*([f"agent={args.agent}"] if args.agent else []), *args.set,
                 *([f"episodes={args.episodes}"] if args.episodes else []),
                 *([f"seed={args.seed}"] if args.seed is not None else [])]
    config = None
    if not args.resume:
        config = load_config(args.config, overrides)
    elif args.config is not None or overrides or args.init_from is not None:
        config = load_resume_config(args.out, args.config, overrides)
    if args.init_from is not None:
        config = dataclasses.replace(config, init_from=str(Path(args.init_from).resolve()))
    if backend_given(args):
        config = config or read_run_config(args.out)
        try:
            config = dataclasses.replace(config, backend=backend_options(args, config.backend).to_dict())
        except ValueError as e:
            raise usage_error("ddc search", e) from None
    out = Path(args.out) if args.out else default_run_dir(args.config, config.agent)

    def started(run_dir: Path) -> None:
        print(f"run folder: {run_dir.resolve()}\ntensorboard: tensorboard --logdir {run_dir / 'tensorboard'}",
              flush=True)

    try:
        summary = run_search(config, out, resume=args.resume, progress=not args.quiet, on_start=started)
    except KeyboardInterrupt:
        print(f"ddc search: stopped; continue with: ddc search --resume --out {out}", file=sys.stderr)
        raise
    best = summary["best_info"]
    if best.get("status") == "ok":
        print(f"best student (episode {summary['best_episode']}): reward {summary['best_reward']:.4f}, val_acc "
              f"{best['val_acc']:.4f} (teacher {best['teacher_val_acc']:.4f}), params ratio "
              f"{best['param_ratio']:.3f}, FLOPs ratio {best['flop_ratio']:.3f}"
              + (f", latency ratio {best['latency_ratio']:.3f}" if best.get("latency_ratio") is not None else ""))
    else:
        print("no valid student found")
    files = "summary.json, best_student.pt" if summary["best_student"] else "summary.json"
    print(f"{summary['episodes']} episodes ({summary['invalid_episodes']} invalid), {summary['evaluations']} "
          f"students trained, cache-hit rate {summary['cache_hit_rate']:.2f}, {summary['wall_seconds']:.0f} s; "
          f"run folder: {out.resolve()} ({files})")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc search``."""
    p = commands.add_parser(
        "search", help="run a search agent on a DDC env from a YAML config",
        description="Search a teacher's students with an agent (RL or reference) from a YAML config; writes a run "
                    "folder (config, results store, TensorBoard, agent checkpoint, best student, summary).",
        epilog="agents:\n" + "\n".join(f"  {name:<16}{entry.summary}" for name, entry in AGENTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML search config (see configs/); optional with --resume")
    p.add_argument("--agent", metavar="NAME", help=f"agent, overrides the config's: {', '.join(AGENTS)}")
    p.add_argument("--episodes", type=positive_int, help="episodes (student evaluations) in all; with --resume, "
                                                          "a larger number extends the search")
    p.add_argument("--seed", type=non_negative_int, help="search seed (overrides the config's)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<config>-<agent>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its config.yaml")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values: env_kwargs.fidelity=smoke agent_kwargs.learning_rate=3e-4 ...")
    p.add_argument("--init-from", metavar="CKPT", help="start the controller from another run's agent.ckpt "
                                                       "(policy transfer)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_arguments(p)
    p.set_defaults(func=_search)
