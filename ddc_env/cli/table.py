"""``ddc table build|extend|info|latency``: build a benchmark table from a live env's task, add the students benchmark
runs reached to one, describe one, or time its units on this machine as another device (:mod:`ddc_env.lab.tables`,
:func:`ddc_env.tables.extend_table`, :func:`ddc_env.tables.measure_latency_table`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..lab.config import env_arguments
from ..lab.tables import (build_env_table, default_table_file, default_table_store, describe, describe_surrogates,
                          recorded_students)
from ..tables import BenchTable, extend_table, measure_latency_table
from .argtypes import positive_int
from .backend_args import add_backend_arguments, backend_options

__all__ = ["add_command"]


def _build(args: argparse.Namespace) -> int:
    # --workers counts the build's processes, or the Ray workers with --backend ray
    backend = backend_options(args, workers=args.backend == "ray")
    out = Path(args.out) if args.out else default_table_file(args.name)
    store = Path(args.store) if args.store else default_table_store(args.name)
    command = " ".join(["ddc table build", args.name, "--env", args.env, *(["--set", *args.set] if args.set else []),
                        *(f"--fidelity {f}" for f in args.fidelity), f"--students {args.students}",
                        f"--seed {args.seed}", f"--threads {args.threads}"])
    table = build_env_table(args.name, args.env, env_arguments(args.env, args.set), args.fidelity, out=out,
                            store=store, students=args.students, seed=args.seed, threads=args.threads,
                            workers=args.workers or 1, backend=backend,
                            ship_teacher=args.ship_teacher, command=command, progress=not args.quiet)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(table.rows)} rows, "
          f"{len(table.spec_hashes())} students; results store {store}")
    return 0


def _extend(args: argparse.Namespace) -> int:
    table = BenchTable.load(args.table)
    out = Path(args.out) if args.out else table.path
    students = recorded_students([Path(p) for p in args.results], table)
    command = " ".join(["ddc table extend", args.table, "--results", *args.results,
                        *(["--fidelity", args.fidelity] if args.fidelity else [])])
    before = len(table.rows)
    extended = extend_table(table, students, out, store=Path(args.store) if args.store else
                            default_table_store(table.name), fidelity=args.fidelity, threads=args.threads,
                            command=command, progress=not args.quiet)
    print(f"wrote {out}: {len(students)} recorded students, {len(extended.rows) - before} new rows; a surrogate "
          "twin fits its model again on first use")
    return 0


def _info(args: argparse.Namespace) -> int:
    table = BenchTable.load(args.table)
    print(describe(table))
    if args.surrogate:
        print(describe_surrogates(table))
    return 0


def _latency(args: argparse.Namespace) -> int:
    table = BenchTable.load(args.table)
    out = Path(args.out) if args.out else table.path
    entry = measure_latency_table(table, args.name, progress=not args.quiet)
    table.save(out)
    print(f"wrote {out}: {len(entry['units'])} units timed on {entry['describe']['signature']} as device "
          f"{args.name!r}; a twin uses them with device={args.name!r}")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc table build|info|latency``."""
    table = commands.add_parser("table", help="build or describe a benchmark table (the twins' data)",
                                description="Build a benchmark table from a live env's task, describe one, or time "
                                            "its units on this machine.")
    actions = table.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="score students with the live scorer into a table file (resumable)",
        description="Score students of a live env's action space at one or more fidelities and training seeds; every "
                    "evaluation goes through a results store first, so a killed or later build continues where it "
                    "stopped.")
    build.add_argument("name", help="the table's name (e.g. lenet5_mnist)")
    build.add_argument("--env", required=True, help="the live env id whose task is tabulated")
    build.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="env arguments, e.g. "
                                                                                  "dataset=mnist_sample")
    build.add_argument("--fidelity", action="append", required=True, metavar="NAME[:SEEDS][=STUDENTS]",
                       help="a fidelity preset, its training seeds and how many students (all or a count; counts are "
                            "prefixes of one fixed list), e.g. fast:0,1=all or zero=600 (repeatable)")
    build.add_argument("--students", default="all", help="students of fidelities without =STUDENTS (default all)")
    build.add_argument("--seed", type=int, default=0, help="seed of the random students (default 0)")
    build.add_argument("--workers", type=positive_int, help="processes scoring students (default 1), or Ray workers "
                                                             "with --backend ray (default: as many as the free CPUs "
                                                             "hold)")
    build.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1; KD results "
                                                              "depend on it slightly)")
    build.add_argument("--store", help="results store (default runs/tables/<name>.sqlite)")
    build.add_argument("--out", help="the table file (default <name>.json.gz)")
    build.add_argument("--ship-teacher", action="store_true", help="copy the teacher checkpoint beside the table")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    add_backend_arguments(build, workers=False)
    build.set_defaults(func=_build)
    extend = actions.add_parser(
        "extend", help="score the best students of benchmark runs live and add them to a table (resumable)",
        description="Add to a table the best students recorded in ddc benchmark results files that it lacks, scored "
                    "live on this machine with the table's teacher, data, recipe and latency table at one fidelity "
                    "and its training seeds: the students agents reach, where a surrogate twin has few rows. Every "
                    "evaluation goes through a results store first, so a killed extension continues where it stopped.")
    extend.add_argument("table", help="a shipped table's name or a table file")
    extend.add_argument("--results", nargs="+", required=True, metavar="RESULTS_CSV",
                        help="benchmark results files (a benchmark folder's results.csv) on the table's twin")
    extend.add_argument("--fidelity", help="the fidelity the students are scored at (default the table's default)")
    extend.add_argument("--threads", type=positive_int, help="torch threads (default the table's)")
    extend.add_argument("--store", help="results store (default runs/tables/<name>.sqlite)")
    extend.add_argument("--out", help="the table file to write (default: the table's own file)")
    extend.add_argument("--quiet", action="store_true", help="no progress bar")
    extend.set_defaults(func=_extend)
    info = actions.add_parser("info", help="describe a table: rows, fidelities, seed noise, surrogate quality")
    info.add_argument("table", help="a shipped table's name or a table file")
    info.add_argument("--surrogate", action="store_true", help="also fit and cross-validate its surrogate")
    info.set_defaults(func=_info)
    latency = actions.add_parser(
        "latency", help="time a table's units on this machine: another device for its twins",
        description="Time every unit of a table's latency table on this machine (the current timing protocol, the "
                    "table's threads and batch size) and store them in the table file under a device name; a twin of "
                    "the table then takes device=NAME (like HW-NAS-Bench's devices: same accuracies, this CPU's "
                    "time ratios).")
    latency.add_argument("table", help="a shipped table's name or a table file")
    latency.add_argument("--name", required=True, help="the device's name, e.g. xeon-avx2")
    latency.add_argument("--out", help="the table file to write (default: the table's own file)")
    latency.add_argument("--quiet", action="store_true", help="no progress bar")
    latency.set_defaults(func=_latency)
