"""Benchmark tables as jobs: build one from a live env's task (incremental and resumable through a results store,
on this machine's processes or a Ray pool) and describe one (rows, fidelities, training-seed noise, rank agreement,
surrogate quality)."""
from __future__ import annotations

import csv
import functools
import itertools
import json
import re
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scipy.stats import kendalltau

from .. import registration
from ..arch import NetSpec
from ..distill import Fidelity
from ..env import EnvConfig
from ..scoring import Scorer
from ..scoring.surrogate import fit_surrogate
from ..students import students_for
from ..tables import BenchTable, TableError, build_table
from ..task import load_task
from .backend import BackendOptions
from .benchmark.validate import recorded_choices

__all__ = ["build_env_table", "default_table_file", "default_table_store", "describe", "describe_surrogates",
           "parse_fidelity", "recorded_students"]

_FIDELITY = re.compile(r"^(?P<name>[a-z_]+)(?::(?P<seeds>\d+(?:,\d+)*))?(?:=(?P<students>all|\d+))?$")


def parse_fidelity(text: str, default_students: str) -> tuple[str, list[int], str]:
    """``NAME[:SEEDS][=STUDENTS]`` -> (name, seeds, students), e.g. ``fast:0,1=all`` or ``zero=600``."""
    m = _FIDELITY.match(text)
    if m is None:
        raise ValueError(f"--fidelity {text!r}: expected NAME[:SEEDS][=STUDENTS], e.g. fast:0,1=all or zero=600")
    seeds = [int(s) for s in m["seeds"].split(",")] if m["seeds"] else [0]
    return m["name"], seeds, m["students"] or default_students


def default_table_file(name: str) -> Path:
    """Where a table is written unless told: ``<name>.json.gz`` in the working folder."""
    return Path(f"{name}.json.gz")


def default_table_store(name: str) -> Path:
    """The results store of a table's build unless told: ``runs/tables/<name>.sqlite``."""
    return Path("runs") / "tables" / f"{name}.sqlite"


def build_env_table(name: str, env_id: str, env_kwargs: Mapping[str, Any], fidelities: Sequence[str], *, out: Path,
                    store: Path, students: str = "all", seed: int = 0, threads: int = 1, workers: int = 1,
                    backend: BackendOptions = BackendOptions(), ship_teacher: bool = False, command: str = "",
                    progress: bool = True) -> BenchTable:
    """Score students of the live env ``gym.make(env_id, **env_kwargs)`` into the table ``name``, written to
    ``out``: at each fidelity of ``fidelities`` (``NAME[:SEEDS][=STUDENTS]``, see :func:`parse_fidelity`;
    ``students``, ``"all"`` or a count, where none is given; counted students are drawn with ``seed``), every
    evaluation going through the results store ``store`` first (a killed or later build continues where it stopped).
    Students are scored by ``workers`` processes of ``threads`` torch threads, or by a Ray pool when ``backend`` is
    shared (its workers are Ray's); ``command`` is recorded in the table as what built it."""
    if not registration.is_live(env_id):
        raise ValueError(f"a table is built from a live env; {env_id!r} is a benchmark twin")
    env_config = registration.env_config(env_id, env_kwargs)
    plan = [parse_fidelity(text, students) for text in fidelities]
    if len({fidelity for fidelity, _, _ in plan}) != len(plan):
        raise ValueError("each fidelity may be given once (list its seeds as NAME:0,1)")
    device = env_config.device if env_config.device != "auto" else "cpu"
    task = load_task(env_config.task_config(), progress=progress)
    chosen = {fidelity: students_for(task, count, seed) for fidelity, _, count in plan}
    pool = functools.partial(_ray_pool, backend, env_config, device, threads) if backend.shared else None
    return build_table(name, env_config.task_config(), {fidelity: seeds for fidelity, seeds, _ in plan}, chosen, out,
                       store=store, protocol=env_config.latency_protocol(), threads=threads, workers=workers,
                       device=device, pool=pool,
                       meta={"env_id": registration.resolve_id(env_id), "env_kwargs": dict(env_kwargs),
                             "command": command, "student_seed": seed},
                       ship_teacher=ship_teacher, progress=progress)


def recorded_students(paths: Sequence[Path], table: BenchTable) -> list[tuple[dict[str, Any], NetSpec]]:
    """The best students recorded in ``ddc benchmark`` results files (``results.csv``), as (choices, spec) of
    ``table``'s task, without repeats; a ValueError naming the file and row when one is not a student of it."""
    out: dict[str, tuple[dict[str, Any], NetSpec]] = {}
    for path in paths:
        if not path.is_file():
            raise ValueError(f"no results file {path} (a benchmark folder's results.csv)")
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for number, row in enumerate(rows, start=2):
            try:
                choices = recorded_choices(row, table.task.codec)
                spec = table.task.student_spec(choices)
            except (KeyError, ValueError, json.JSONDecodeError) as error:
                raise ValueError(f"{path} line {number}: not a student of table {table.name!r} ({error})") from None
            if row.get("spec_hash") and spec.hash() != row["spec_hash"]:
                raise ValueError(f"{path} line {number}: its student {row['spec_hash']} is not one of table "
                                 f"{table.name!r}'s task (decoded as {spec.hash()})")
            out.setdefault(spec.hash(), (choices, spec))
    return list(out.values())


def _ray_pool(backend: BackendOptions, env_config: EnvConfig, device: str, threads: int,
              fidelity: Fidelity) -> Scorer:
    """A Ray pool scoring the build's students at ``fidelity`` with the scoring key of the build's local scorers
    (the latency table with the env's protocol, the same device and torch threads)."""
    from ..scoring.ray import RayScorer  # here: Ray is an optional extra, and slow to import

    return RayScorer(env_config.task_config(), fidelity, latency="model",
                     latency_protocol=env_config.latency_protocol(), device=device, threads=threads,
                     workers=backend.workers, num_cpus=backend.cpus_per_worker, num_gpus=backend.gpus_per_worker,
                     address=backend.address)


def describe(table: BenchTable) -> str:
    """Rows, fidelities, seeds, accuracy range and the training-seed noise of a table, as text."""
    lines = [f"table {table.name}: task {table.task.name}, {len(table.spec_hashes())} students, {len(table.rows)} rows",
             f"built with: {table.meta.get('command', '?')} ({table.meta.get('threads')} thread(s) per worker)",
             "latency tables (device=): build (the rows' own, protocol v"
             f"{table.latency['describe'].get('protocol_version', '?')})"
             + "".join(f", {name} ({entry['describe'].get('signature', '?')})"
                       for name, entry in table.latencies.items())]
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
    for extension in table.meta.get("extensions", []):
        fidelity = extension["fidelity"]
        compute = extension["compute"][fidelity]
        lines.append(f"  extended {extension['date']}: {len(extension['spec_hashes'][fidelity])} students at {fidelity} "
                     f"on {compute['device_signature']} in {compute['precision']} ({extension['command']})")
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


def describe_surrogates(table: BenchTable) -> str:
    """The cross-validated quality of the surrogate fitted at each fidelity of ``table`` (a fidelity with too few
    rows has none, and says why), as text."""
    lines = []
    for fidelity in table.fidelities:
        try:
            q = fit_surrogate(table, fidelity).quality
        except TableError as e:
            lines.append(f"  surrogate at {fidelity}: none ({e})")
            continue
        lines.append(f"  surrogate at {fidelity}: Kendall tau {q.kendall_tau:.3f}, MAE {q.mae:.4f} ({q.folds}-fold, "
                     f"{q.rows} students)")
    return "\n".join(lines)
