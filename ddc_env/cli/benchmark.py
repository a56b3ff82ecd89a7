"""``ddc benchmark run|validate|leaderboard``: every agent x seed on one env at one budget, scored against random
search; re-scoring a benchmark's claimed results; the leaderboard (:mod:`ddc_env.lab.benchmark`).

The spellings of the release before still work, with a one-line deprecation notice on stderr, and go in the next
release: ``ddc benchmark --env ...`` (now ``run``), ``--validate FILE`` (now ``validate FILE``) and
``--leaderboard FILE --from DIR ...`` (now ``leaderboard FILE --from DIR ...``)."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import registration
from ..agents import AGENTS
from ..lab.backend import backend_flags
from ..lab.benchmark import (DEFAULT_BUDGET, EPISODES_CSV, REPS, RESULTS_CSV, RESULTS_MD, format_validation,
                             make_benchmark_config, read_benchmark_config, render_section, run_benchmark,
                             validate_results, write_leaderboard)
from ..lab.config import env_arguments
from ..lab.runs import CONFIG_FILE
from .argtypes import agent_file, non_negative_int, positive_int
from .backend_args import add_backend_arguments, backend_given, backend_options
from .usage import usage_error

__all__ = ["add_command"]

DEPRECATED = "ddc benchmark: {old} is deprecated; use {new} (the old form goes in the next release)"


def _command_line(args: argparse.Namespace, agents: Sequence[str]) -> str:
    """The ``ddc benchmark run`` command that reproduces the benchmark ``args`` start."""
    parts = ["ddc", "benchmark", "run", "--env", args.env, "--agents", *agents, "--seeds", str(args.seeds),
             *(["--first-seed", str(args.first_seed)] if args.first_seed else []), "--budget", str(args.budget),
             *(["--budget-seconds", f"{args.budget_seconds:g}"] if args.budget_seconds else []),
             *(["--config-dir", args.config_dir] if args.config_dir else []),
             *(p for agent, path in args.config for p in ("--config", f"{agent}={path}")),
             *(p for agent, path in args.init_from for p in ("--init-from", f"{agent}={path}")),
             *(["--set", *args.set] if args.set else []),
             *(["--target-k", str(args.target_k)] if args.target_k != 100 else []),
             *(["--reference-samples", str(args.reference_samples)] if args.reference_samples != 20_000 else []),
             *(["--reps", str(args.reps)] if args.reps != REPS else []),
             *backend_flags(backend_options(args)), "--jobs", str(args.jobs), "--out", args.out]
    return shlex.join(parts)


def _differing_flags(args: argparse.Namespace) -> list[str]:
    """The run flags given with --resume that differ from the folder's saved benchmark (flags equal to it are
    fine), each named with the saved value."""
    saved = read_benchmark_config(Path(args.out))
    differ = []
    if args.env and registration.resolve_id(args.env) != saved.env_id:
        differ.append(f"--env {args.env} differs from its {saved.env_id}")
    names = [a.agent for a in saved.agents]
    if args.agents and (list(AGENTS) if args.agents == ["all"] else list(args.agents)) != names:
        differ.append(f"--agents {' '.join(args.agents)} differs from its {' '.join(names)}")
    if args.set and env_arguments(saved.env_id, args.set) != saved.env_kwargs:
        differ.append(f"--set {' '.join(args.set)} differs from its env arguments {saved.env_kwargs}")
    if args.config or args.config_dir:
        again = make_benchmark_config(saved.env_id, names, seeds=saved.seeds, budget=saved.budget,
                                      env_kwargs=saved.env_kwargs, config_dir=args.config_dir,
                                      configs=dict(args.config))
        changed = [a.agent for a, b in zip(again.agents, saved.agents) if a.agent_kwargs != b.agent_kwargs]
        if changed:
            differ.append(f"--config/--config-dir give {', '.join(changed)} other hyperparameters than its own")
    return differ


def _run(args: argparse.Namespace) -> int:
    if args.resume:
        differ = _differing_flags(args)
        if differ:
            raise usage_error("ddc benchmark run", f"--resume continues {args.out}/{CONFIG_FILE} as saved, and "
                                                   f"{'; '.join(differ)}: drop them (or start a new benchmark in "
                                                   f"another --out)")
        backend = backend_options(args, read_benchmark_config(Path(args.out)).backend) if backend_given(args) else None
        results = run_benchmark(None, args.out, resume=True, jobs=args.jobs, progress=not args.quiet,
                                backend=None if backend is None else backend.to_dict(), budget=args.budget)
    else:
        if args.env is None or not args.agents:
            raise usage_error("ddc benchmark run", "needs --env ID and --agents NAME ... (or --resume --out DIR)")
        args.budget = DEFAULT_BUDGET if args.budget is None else args.budget
        agents = list(AGENTS) if args.agents == ["all"] else list(args.agents)
        config = make_benchmark_config(
            args.env, agents, seeds=range(args.first_seed, args.first_seed + args.seeds), budget=args.budget,
            budget_seconds=args.budget_seconds, env_kwargs=env_arguments(args.env, args.set),
            config_dir=args.config_dir, configs=dict(args.config), target_k=args.target_k,
            reference_samples=args.reference_samples, bootstrap_reps=args.reps,
            backend=backend_options(args).to_dict(), command=_command_line(args, agents),
            init_from=dict(args.init_from))
        results = run_benchmark(config, args.out, jobs=args.jobs, progress=not args.quiet)
    print(render_section(results, heading="#"))
    print(f"benchmark folder: {Path(args.out).resolve()} ({RESULTS_MD}, {RESULTS_CSV}, {EPISODES_CSV}, plots)")
    return 0


def _validate(args: argparse.Namespace) -> int:
    report = validate_results(args.results)
    print(format_validation(report))
    return 1 if report["mismatch"] else 0


def _folder_pair(text: str) -> tuple[str, str]:
    """An argparse type: ``WITH=WITHOUT`` -> (folder, folder)."""
    started, sep, fresh = text.partition("=")
    if not sep or not started or not fresh:
        raise argparse.ArgumentTypeError(f"expected WITH_DIR=WITHOUT_DIR, got {text!r}")
    return started, fresh


def _leaderboard(args: argparse.Namespace) -> int:
    write_leaderboard(args.file, args.from_dirs, getattr(args, "transfer", []))
    print(f"wrote {args.file} from {', '.join(args.from_dirs)}")
    return 0


def _deprecated(args: argparse.Namespace) -> int:
    """``ddc benchmark`` without an action: the flags of the release before, each form run by its action."""
    if args.validate is not None:
        print(DEPRECATED.format(old="'--validate'", new="'ddc benchmark validate'"), file=sys.stderr)
        return _validate(argparse.Namespace(results=args.validate))
    if args.leaderboard is not None:
        print(DEPRECATED.format(old="'--leaderboard'", new="'ddc benchmark leaderboard'"), file=sys.stderr)
        return _leaderboard(argparse.Namespace(file=args.leaderboard, from_dirs=args.from_dirs))
    if not (args.out or args.env or args.agents or args.resume):
        raise usage_error("ddc benchmark", "the following arguments are required: ACTION (run, validate or "
                                           "leaderboard; see ddc benchmark --help)")
    print(DEPRECATED.format(old="running without 'run'", new="'ddc benchmark run' with the same flags"),
          file=sys.stderr)
    if args.out is None:
        raise usage_error("ddc benchmark run", "the following arguments are required: --out")
    return _run(args)


def _add_run_arguments(parser: argparse.ArgumentParser, *, deprecated: bool = False) -> None:
    """The arguments of ``ddc benchmark run``; ``deprecated``: as the hidden flags of ``ddc benchmark`` itself
    (the form of the release before), where ``--out`` is optional."""
    first = len(parser._actions)
    parser.add_argument("--env", metavar="ID", help="env id, e.g. DDC-Bench-LeNet5-MNIST-v0 (a twin) or a live id")
    parser.add_argument("--agents", nargs="+", metavar="NAME", help="agents to compare (all: every built-in one)")
    parser.add_argument("--seeds", type=positive_int, default=10, help="seeds per agent (default 10)")
    parser.add_argument("--first-seed", type=non_negative_int, default=0,
                        help="the first seed (default 0; tune on others, e.g. 100)")
    parser.add_argument("--budget", type=int, help=f"evaluations (episodes) per run (default {DEFAULT_BUDGET}); "
                                                   f"with --resume, a larger one extends every run")
    parser.add_argument("--budget-seconds", type=float, help="also stop a run before its simulated seconds (the "
                                                             "live evaluations' cost) pass this")
    parser.add_argument("--config-dir", metavar="DIR", help="agent configs <agent>.yaml (agent_kwargs, n_envs): a "
                                                            "folder or a packaged one, e.g. bench/lenet5_mnist; "
                                                            "others: defaults")
    parser.add_argument("--init-from", action="append", type=agent_file, default=[], metavar="AGENT=CKPT",
                        help="start every run of AGENT from another run's agent checkpoint (policy transfer: a policy "
                             "pre-trained on another task; repeatable)")
    parser.add_argument("--config", action="append", type=agent_file, default=[], metavar="AGENT=FILE",
                        help="one agent's config (repeatable)")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="env arguments, e.g. fidelity=zero")
    parser.add_argument("--target-k", type=int, default=100, help="the target: random search's expected best of K "
                                                                  "episodes (default 100)")
    parser.add_argument("--reference-samples", type=int, default=20_000,
                        help="random episodes of a sampled reference (surrogate twins; default 20000)")
    parser.add_argument("--reps", type=int, default=REPS, help=f"bootstrap replications of every interval (default "
                                                               f"{REPS})")
    parser.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                        help="runs in parallel processes (default: the CPU count)")
    parser.add_argument("--out", metavar="DIR", required=not deprecated, help="the benchmark folder")
    parser.add_argument("--resume", action="store_true", help="continue the benchmark in --out (finished runs are "
                                                              "kept)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_arguments(parser)
    if deprecated:
        for action in parser._actions[first:]:
            action.help = argparse.SUPPRESS


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc benchmark run|validate|leaderboard`` (and the deprecated flags of ``ddc benchmark``)."""
    benchmark = commands.add_parser(
        "benchmark", help="every agent x seed on one env at one budget, scored against random search",
        description="Benchmark agents (run), re-score a benchmark's claimed results (validate), or write a "
                    "leaderboard from benchmark folders (leaderboard).")
    actions = benchmark.add_subparsers(dest="action", metavar="ACTION")
    run = actions.add_parser(
        "run", help="every agent x seed on one env at one budget, scored against random search (resumable)",
        description="Run every agent with every seed on one env id at one budget (resumable), score each run "
                    "against random search (normalized score, probability of improvement, evaluations to random's "
                    "expected best of --target-k) with IQMs and 95% stratified bootstrap CIs (rliable), and plot "
                    "anytime curves and performance profiles.",
        epilog="agents: " + ", ".join(AGENTS) + " (or all)")
    _add_run_arguments(run)
    run.set_defaults(func=_run)
    validate = actions.add_parser("validate", help="re-score every claimed best student of a results.csv",
                                  description="Re-score every claimed best student of a benchmark's results.csv "
                                              "with its env and flag mismatches (exit code 1).")
    validate.add_argument("results", metavar="RESULTS_CSV", help="a benchmark folder's results.csv")
    validate.set_defaults(func=_validate)
    leaderboard = actions.add_parser("leaderboard", help="write a leaderboard from benchmark folders",
                                     description="Write a leaderboard (markdown) from benchmark folders, every "
                                                 "claimed best student re-scored first; a folder whose claims do not "
                                                 "all re-score equal is left off with a note.")
    leaderboard.add_argument("file", metavar="FILE", help="the leaderboard to write, e.g. LEADERBOARD.md")
    leaderboard.add_argument("--from", dest="from_dirs", nargs="+", required=True, metavar="DIR",
                             help="benchmark folders")
    leaderboard.add_argument("--transfer", nargs="+", type=_folder_pair, default=[], metavar="WITH=WITHOUT",
                             help="policy transfer: a benchmark folder whose agents started from a pre-trained policy "
                                  "(--init-from) = the same benchmark from scratch")
    leaderboard.set_defaults(func=_leaderboard)

    _add_run_arguments(benchmark, deprecated=True)
    benchmark.add_argument("--validate", metavar="RESULTS_CSV", help=argparse.SUPPRESS)
    benchmark.add_argument("--leaderboard", metavar="FILE", help=argparse.SUPPRESS)
    benchmark.add_argument("--from", dest="from_dirs", nargs="+", default=[], metavar="DIR", help=argparse.SUPPRESS)
    benchmark.set_defaults(func=_deprecated)
