"""``ddc table``: build a benchmark table from a live env's task (incremental and resumable through a results
store) and describe a table (rows, fidelities, training-seed noise, surrogate quality)."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import re
import statistics
from collections import defaultdict
from pathlib import Path

from scipy.stats import kendalltau

from .. import registration
from ..distill import Fidelity
from ..env import EnvConfig
from ..scoring import Scorer
from ..tables import BenchTable, TableError, build_table, students_for
from ..task import load_task
from ..validate import check_int
from .backend import BackendOptions, add_backend_arguments, backend_options
from .config import set_dotted

__all__ = ["add_table_command", "parse_fidelity"]

_FIDELITY = re.compile(r"^(?P<name>[a-z_]+)(?::(?P<seeds>\d+(?:,\d+)*))?(?:=(?P<students>all|\d+))?$")


def parse_fidelity(text: str, default_students: str) -> tuple[str, list[int], str]:
    """``NAME[:SEEDS][=STUDENTS]`` -> (name, seeds, students), e.g. ``fast:0,1=all`` or ``zero=600``."""
    m = _FIDELITY.match(text)
    if m is None:
        raise ValueError(f"--fidelity {text!r}: expected NAME[:SEEDS][=STUDENTS], e.g. fast:0,1=all or zero=600")
    seeds = [int(s) for s in m["seeds"].split(",")] if m["seeds"] else [0]
    return m["name"], seeds, m["students"] or default_students


def _build(args: argparse.Namespace) -> int:
    kwargs = set_dotted({}, args.set, [f.name for f in dataclasses.fields(EnvConfig)], "env argument")
    env_config = registration.env_config(args.env, kwargs)
    if not registration.is_live(args.env):
        raise ValueError(f"a table is built from a live env; {args.env!r} is a benchmark twin")
    plan = [parse_fidelity(text, args.students) for text in args.fidelity]
    if len({name for name, _, _ in plan}) != len(plan):
        raise ValueError("each fidelity may be given once (list its seeds as NAME:0,1)")
    check_int(args.workers, "--workers", minimum=1, optional=True)
    # --workers counts the build's processes, or the Ray workers with --backend ray
    backend = backend_options(argparse.Namespace(**{**vars(args), "workers": args.workers if args.backend == "ray"
                                                    else None}))
    device = env_config.device if env_config.device != "auto" else "cpu"
    task = load_task(env_config.task_config(), progress=not args.quiet)
    students = {name: students_for(task, count, args.seed) for name, _, count in plan}
    out = Path(args.out) if args.out else Path(f"{args.name}.json.gz")
    store = Path(args.store) if args.store else Path("runs") / "tables" / f"{args.name}.sqlite"
    command = " ".join(["ddc table build", args.name, "--env", args.env, *(["--set", *args.set] if args.set else []),
                        *(f"--fidelity {f}" for f in args.fidelity), f"--students {args.students}",
                        f"--seed {args.seed}", f"--threads {args.threads}"])
    pool = functools.partial(_ray_pool, backend, env_config, device, args.threads) if backend.shared else None
    table = build_table(args.name, env_config.task_config(), {name: seeds for name, seeds, _ in plan}, students, out,
                        store=store, protocol=env_config.latency_protocol(), threads=args.threads,
                        workers=args.workers or 1, device=device, pool=pool,
                        meta={"env_id": registration.resolve_id(args.env), "env_kwargs": kwargs, "command": command,
                              "student_seed": args.seed},
                        ship_teacher=args.ship_teacher, progress=not args.quiet)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(table.rows)} rows, "
          f"{len(table.spec_hashes())} students; results store {store}")
    return 0


def _ray_pool(backend: BackendOptions, env_config: EnvConfig, device: str, threads: int,
              fidelity: Fidelity) -> Scorer:
    """A Ray pool scoring the build's students at ``fidelity`` with the scoring key of the build's local scorers
    (the latency table with the env's protocol, the same device and torch threads)."""
    from ..scoring.ray import RayScorer

    return RayScorer(env_config.task_config(), fidelity, latency="model",
                     latency_protocol=env_config.latency_protocol(), device=device, threads=threads,
                     workers=backend.workers, num_cpus=backend.cpus_per_worker, num_gpus=backend.gpus_per_worker,
                     address=backend.address)


def describe(table: BenchTable) -> str:
    """Rows, fidelities, seeds, accuracy range and the training-seed noise of a table, as text."""
    lines = [f"table {table.name}: task {table.task.name}, {len(table.spec_hashes())} students, {len(table.rows)} rows",
             f"built with: {table.meta.get('command', '?')} ({table.meta.get('threads')} thread(s) per worker)"]
    for fidelity in table.fidelities:
        rows = [r for r in table.rows if r["fidelity"] == fidelity]
        ok = [r for r in rows if r["status"] == "ok"]
        teacher = table.teacher_record(fidelity)
        line = (f"  {fidelity}: {len({r['spec_hash'] for r in rows})} students, seeds {table.seeds(fidelity)}, "
                f"{len(rows) - len(ok)} not ok; val acc {min(r['val_acc'] for r in ok):.4f}-"
                f"{max(r['val_acc'] for r in ok):.4f} (teacher {teacher['val_acc']:.4f}); mean live evaluation "
                f"{statistics.fmean(r['eval_seconds'] for r in rows):.2f} s")
        noise = table.seed_noise(fidelity)
        if noise:
            line += (f"; seed noise: mean |acc difference| {noise['mean']:.4f}, 95th percentile {noise['p95']:.4f}, "
                     f"max {noise['max']:.4f}")
        compute = table.compute(fidelity)
        line += (f"; trained on {compute['device_signature']} in {compute['precision']}"
                 f"{' (as here: rows reproduce bit for bit)' if table.same_compute(fidelity) else ''}"
                 if compute else "; machine not recorded")
        lines.append(line)
    lines += _rank_agreement(table)
    return "\n".join(lines)


def _rank_agreement(table: BenchTable) -> list[str]:
    """Kendall tau of the validation accuracies of the students two fidelity/seed columns share: how alike the
    fidelities rank students, and (two seeds of one fidelity) the ceiling training noise sets."""
    columns: dict[str, dict[str, float]] = defaultdict(dict)
    for r in table.rows:
        if r["status"] == "ok":
            columns[f"{r['fidelity']} seed {r['seed']}"][r["spec_hash"]] = r["val_acc"]
    out = []
    for (a, acc_a), (b, acc_b) in itertools.combinations(columns.items(), 2):
        shared = sorted(acc_a.keys() & acc_b.keys())
        if len(shared) >= 3:
            tau = kendalltau([acc_a[h] for h in shared], [acc_b[h] for h in shared]).statistic
            out.append(f"  rank agreement {a} vs {b}: Kendall tau {tau:.3f} ({len(shared)} students)")
    return out


def _info(args: argparse.Namespace) -> int:
    print(describe(BenchTable.load(args.table)))
    if args.surrogate:
        from ..scoring.surrogate import fit_surrogate

        table = BenchTable.load(args.table)
        for fidelity in table.fidelities:
            try:
                q = fit_surrogate(table, fidelity).quality
            except TableError as e:  # a fidelity with too few rows has no surrogate; the others still do
                print(f"  surrogate at {fidelity}: none ({e})")
                continue
            print(f"  surrogate at {fidelity}: Kendall tau {q.kendall_tau:.3f}, MAE {q.mae:.4f} ({q.folds}-fold, "
                  f"{q.rows} students)")
    return 0


def add_table_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc table build|info``."""
    table = commands.add_parser("table", help="build or describe a benchmark table (the twins' data)",
                                description="Build a benchmark table from a live env's task, or describe one.")
    actions = table.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="score students with the live scorer into a table file (resumable)",
        description="Score students of a live env's action space at one or more fidelities and training seeds; every "
                    "evaluation goes through a results store first, so a killed or later build continues where it "
                    "stopped.")
    build.add_argument("name", help="the table's name (e.g. lenet5_mnist)")
    build.add_argument("--env", required=True, help="the live env id whose task is tabulated")
    build.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="env arguments, e.g. "
                                                                                  "dataset=mnist_sample")
    build.add_argument("--fidelity", action="append", required=True, metavar="NAME[:SEEDS][=STUDENTS]",
                       help="a fidelity preset, its training seeds and how many students (all or a count; counts are "
                            "prefixes of one fixed list), e.g. fast:0,1=all or zero=600 (repeatable)")
    build.add_argument("--students", default="all", help="students of fidelities without =STUDENTS (default all)")
    build.add_argument("--seed", type=int, default=0, help="seed of the random students (default 0)")
    build.add_argument("--workers", type=int, help="processes scoring students (default 1), or Ray workers with "
                                                    "--backend ray (default: as many as the free CPUs hold)")
    build.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1; KD results "
                                                              "depend on it slightly)")
    build.add_argument("--store", help="results store (default runs/tables/<name>.sqlite)")
    build.add_argument("--out", help="the table file (default <name>.json.gz)")
    build.add_argument("--ship-teacher", action="store_true", help="copy the teacher checkpoint beside the table")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    add_backend_arguments(build, workers=False)
    build.set_defaults(func=_build)
    info = actions.add_parser("info", help="describe a table: rows, fidelities, seed noise, surrogate quality")
    info.add_argument("table", help="a shipped table's name or a table file")
    info.add_argument("--surrogate", action="store_true", help="also fit and cross-validate its surrogate")
    info.set_defaults(func=_info)

