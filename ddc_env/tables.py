"""Benchmark tables: students of a task's action space scored by the live scorer, in one compact file that ships in
the package and that the tabular and surrogate twins (``DDC-Bench-*``) read instead of training anything.

A table holds the task (light part), the latency table of every unit its students use, and one row per (student,
fidelity, training seed): status, validation accuracy, params, FLOPs, size, latency and the seconds the live
evaluation took. :func:`build_table` makes one, incrementally: every evaluation goes through the SQLite results
store first, so a killed or later build continues where it stopped. File format: gzip-compressed JSON
(``<name>.json.gz``), readable with nothing but the standard library.

Example::

    table = BenchTable.load("lenet5_mnist")
    table.rows_for(spec.hash(), "fast")      # one row per training seed
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import itertools
import json
import os
import shutil
import time
import multiprocessing as mp
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arch import UNIT_TYPES, Choice, NetSpec
from .distill import Fidelity, make_fidelity
from .latency import LatencyModel, LatencyProtocol, unit_key
from .models.checkpoints import sidecar_path
from .paths import atomic_writer
from .progress import bar_disable
from .registration import env_config
from .scoring import CachedScorer, LiveScorer, Scorer
from .store import ResultsStore
from .students import covering_specs
from .task import Task, TaskConfig, load_task
from .train import compute_signature

__all__ = ["FORMAT", "ROW_FIELDS", "TABLES_DIR", "BenchTable", "TableError", "best_known_key", "build_table",
           "extend_table", "live_task", "measure_latency_table"]

FORMAT = "ddc_env.table/2"  # /2 records choices as the codec's tokens; /1 (widths, 0.0 = removed) still loads
READABLE_FORMATS = ("ddc_env.table/1", FORMAT)
TABLES_DIR = Path(__file__).resolve().parent / "tables"
ROW_FIELDS = ("spec_hash", "fidelity", "seed", "status", "val_acc", "params", "flops", "size_bytes", "latency_ms",
              "eval_seconds", "train_seconds", "train_images_per_second", "final_loss")


class TableError(ValueError):
    """A benchmark table that is missing, malformed, or does not hold what is asked of it."""


# ------------------------------------------------------------------------------------------------ table


@dataclass
class BenchTable:
    """A benchmark table in memory (see the module docstring)."""

    name: str
    task: Task
    meta: dict[str, Any]  # env id and arguments, the build command, threads, the fidelities and their teachers
    latency: dict[str, Any]  # {"describe": ..., "units": {unit key: ms}}
    choices: dict[str, list[str | float]]  # spec hash -> recorded choice per decision, in task.decisions order
    rows: list[dict[str, Any]]
    path: Path | None = None  # the file it was read from
    latencies: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # other CPUs' unit tables, by name

    @functools.cached_property
    def digest(self) -> str:
        """A hash of the table's content (task, meta, latency, choices, rows): what a model fit on it depends on."""
        content = [self.name, self.task.to_dict(), self.meta, self.latency, self.choices, self.rows]
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @functools.cached_property
    def _index(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        index: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in self.rows:
            index.setdefault((row["spec_hash"], row["fidelity"]), []).append(row)
        for rows in index.values():
            rows.sort(key=lambda r: r["seed"])
        return index

    @property
    def fidelities(self) -> list[str]:
        """The fidelity names the table has rows for."""
        return list(self.meta["fidelities"])

    @property
    def default_fidelity(self) -> str:
        return self.meta.get("default_fidelity", self.fidelities[0])

    def seeds(self, fidelity: str) -> list[int]:
        return list(self.meta["fidelities"][fidelity]["seeds"])

    def teacher_record(self, fidelity: str) -> dict[str, Any]:
        """The teacher's record at ``fidelity`` (its validation accuracy depends on the fidelity's val images)."""
        return dict(self.meta["fidelities"][self.check_fidelity(fidelity)]["teacher"])

    def check_fidelity(self, fidelity: str) -> str:
        if fidelity not in self.meta["fidelities"]:
            raise TableError(f"table {self.name!r} has no fidelity {fidelity!r}; it has {self.fidelities}")
        return fidelity

    def rows_for(self, spec_hash: str, fidelity: str) -> list[dict[str, Any]]:
        """The rows of a student at a fidelity, one per training seed (empty when the table lacks it)."""
        return self._index.get((spec_hash, self.check_fidelity(fidelity)), [])

    def spec_hashes(self, fidelity: str | None = None) -> list[str]:
        """The students the table holds (at ``fidelity``), in table order."""
        seen = dict.fromkeys(r["spec_hash"] for r in self.rows if fidelity is None or r["fidelity"] == fidelity)
        return list(seen)

    def student_choices(self, spec_hash: str) -> dict[str, Choice]:
        """The choices of a student in the table (decision name -> choice)."""
        recorded = self.choices[spec_hash]
        return self.task.codec.decode({d.name: r for d, r in zip(self.task.decisions, recorded)})

    def spec(self, spec_hash: str) -> NetSpec:
        """The student spec of a hash in the table."""
        return self.task.student_spec(self.student_choices(spec_hash))

    def fidelity_amp(self, fidelity: str) -> str:
        """The ``amp`` setting of the fidelity the rows were trained at ("auto": bf16 where the CPU has it)."""
        return self.meta["fidelities"][self.check_fidelity(fidelity)]["fidelity"].get("amp", "auto")

    def compute(self, fidelity: str, spec_hash: str | None = None) -> dict[str, str] | None:
        """The device signature and precision the rows of ``fidelity`` were trained with (None: not recorded); with
        ``spec_hash``, those of that student's rows (an :func:`extend_table` may have added them on another machine)."""
        for extension in self.meta.get("extensions", []):
            if spec_hash is not None and spec_hash in extension["spec_hashes"].get(fidelity, ()):
                return dict(extension["compute"][fidelity])
        precision = self.meta["fidelities"][self.check_fidelity(fidelity)].get("precision")
        signature = self.meta.get("device_signature")
        if precision is None or signature is None:
            return None
        return {"device_signature": signature, "precision": precision}

    def same_compute(self, fidelity: str, device: str = "cpu", spec_hash: str | None = None) -> bool:
        """Whether scoring a student live on ``device`` here reproduces the rows of ``fidelity`` (of ``spec_hash``)
        bit for bit (same processor, instruction set, torch and precision); elsewhere they agree within
        :meth:`seed_noise`."""
        return self.compute(fidelity, spec_hash) == compute_signature(device, self.fidelity_amp(fidelity))

    def seed_noise(self, fidelity: str, key: str = "val_acc") -> dict[str, float] | None:
        """How far two training seeds of one student differ in ``key`` at ``fidelity``: mean, 95th percentile and
        largest |difference| over the students with two ok rows (None when the fidelity has one seed)."""
        diffs = sorted(abs(rows[0][key] - rows[1][key]) for (_, fid), rows in self._index.items()
                       if fid == self.check_fidelity(fidelity) and len(rows) > 1
                       and rows[0]["status"] == rows[1]["status"] == "ok")
        if not diffs:
            return None
        return {"students": len(diffs), "mean": sum(diffs) / len(diffs),
                "p95": diffs[min(len(diffs) - 1, int(0.95 * len(diffs)))], "max": diffs[-1]}

    @property
    def latency_devices(self) -> list[str]:
        """The devices the table has unit latency tables of: "build" (the rows' own) and those added later."""
        return ["build", *self.latencies]

    def latency_model(self, device: str | None = None) -> LatencyModel:
        """A fixed latency table (nothing is measured): the rows' own (``device`` None or "build"), or another CPU's
        added with :func:`measure_latency_table`."""
        if device in (None, "build"):
            return self._latency_model
        if device not in self.latencies:
            raise TableError(f"table {self.name!r} has no latency table of device {device!r}; it has "
                             f"{self.latency_devices}")
        return _fixed_model(self.latencies[device])

    @functools.cached_property
    def _latency_model(self) -> LatencyModel:
        return _fixed_model(self.latency)

    # -- files ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "meta": self.meta, "task": self.task.to_dict(),
                "latency": self.latency, "choices": self.choices, "columns": list(ROW_FIELDS),
                "rows": [[row.get(k) for k in ROW_FIELDS] for row in self.rows],
                **({"latencies": self.latencies} if self.latencies else {})}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table to ``path`` (gzip JSON) atomically."""
        path = Path(path)
        data = json.dumps(self.to_dict(), separators=(",", ":")).encode()
        with atomic_writer(path, "wb") as f:
            f.write(gzip.compress(data, mtime=0))
        return path

    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str]) -> BenchTable:
        """A shipped table by name (``TABLES_DIR/<name>.json.gz``) or a table file by path (cached per file version:
        a table file rewritten since, e.g. with a best-known student added, is read again)."""
        path = _table_path(str(name_or_path))
        stat = path.stat()
        return _load(path, stat.st_mtime_ns, stat.st_size)


def best_known_key(config: Any, table: BenchTable) -> str:
    """Where a twin config's best-known student is stored in its table's ``meta["best_known"]``: backend, fidelity,
    training seed, reward, device and budget, when there is one (the student that scores best depends on all)."""
    reward = config.reward if isinstance(config.reward, (str, Mapping)) else repr(config.reward)
    key = [config.backend, config.fidelity or table.default_fidelity, config.train_seed, reward,
           config.device or "build"]
    budget = getattr(config, "budget", None)
    return json.dumps(key if budget is None else [*key, dict(budget)], sort_keys=True, default=str)


def _fixed_model(latency: Mapping[str, Any]) -> LatencyModel:
    """The fixed LatencyModel of a stored unit table (``{"describe": ..., "units": ...}``)."""
    describe = latency["describe"]
    fields = ("device", "threads", "batch_size", "warmup", "rounds", "unit_rounds", "unit_round_ms")
    return LatencyModel(LatencyProtocol(**{k: describe[k] for k in fields if k in describe}), entries=latency["units"],
                        device_name=describe["device"])


def _table_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = TABLES_DIR / f"{name_or_path}.json.gz"
    if not path.is_file():
        shipped = sorted(p.name.removesuffix(".json.gz") for p in TABLES_DIR.glob("*.json.gz"))
        raise TableError(f"no benchmark table {name_or_path!r}: not a file, nor a table shipped in {TABLES_DIR} "
                         f"(shipped: {', '.join(shipped) or 'none'})")
    return path.resolve()


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, size: int) -> BenchTable:
    """The table file at ``path`` as of its version (``mtime_ns``, ``size``: the cache key)."""
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as e:
        raise TableError(f"{path} is not a benchmark table (gzip JSON): {e}") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise TableError(f"{path} is not a benchmark table (formats {', '.join(READABLE_FORMATS)})")
    columns = data["columns"]
    rows = [dict(zip(columns, values)) for values in data["rows"]]
    return BenchTable(data["name"], Task.from_dict(data["task"]), data["meta"], data["latency"], data["choices"],
                      rows, path, data.get("latencies", {}))


# ------------------------------------------------------------------------------------------------ build


@dataclass(frozen=True)
class _Job:
    """What a build worker needs: the task config, timing protocol and where to write."""

    task_config: TaskConfig
    fidelities: tuple[tuple[str, Fidelity], ...]
    protocol: LatencyProtocol
    store: str
    run: str
    threads: int
    device: str


def _scorers(job: _Job, task: Task) -> dict[str, CachedScorer]:
    latency = LatencyModel(job.protocol)
    return {label: CachedScorer(LiveScorer(task, fidelity, latency="model", latency_protocol=job.protocol,
                                           latency_model=latency, device=job.device, threads=job.threads),
                                ResultsStore(job.store), run=job.run, method="table")
            for label, fidelity in job.fidelities}


def _work(job: _Job, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """A worker process: score ``items`` (fidelity label, choices) into the store; returns how many were new."""
    import torch

    torch.set_num_threads(job.threads)
    task = load_task(job.task_config, progress=False)
    scorers = _scorers(job, task)
    new = 0
    for label, choices in items:
        record = scorers[label].score(task.student_spec(choices))
        new += not record["cache_hit"]
    return new


def _row(record: Mapping[str, Any], fidelity: str, seed: int) -> dict[str, Any]:
    """A table row of a live scorer's record at ``fidelity`` and training ``seed``."""
    return {**{k: record.get(k) for k in ROW_FIELDS}, "fidelity": fidelity, "seed": seed}


def _recorded(task: Task, choices: Mapping[str, Any]) -> list[str | float]:
    """A student's choices as the table records them: the codec's token per decision, in decision order."""
    return list(task.codec.encode({d.name: choices.get(d.name, 1.0) for d in task.decisions}).values())


def build_table(name: str, task_config: TaskConfig, fidelities: Mapping[str, Sequence[int]],
                students: Mapping[str, Sequence[tuple[dict[str, Any], NetSpec]]], out: str | os.PathLike[str], *,
                store: str | os.PathLike[str],
                protocol: LatencyProtocol, threads: int = 1, workers: int = 1, device: str = "cpu",
                meta: Mapping[str, Any] | None = None, ship_teacher: bool = False,
                pool: Callable[[Fidelity], Scorer] | None = None, progress: bool = True) -> BenchTable:
    """Score ``students[fidelity]`` at each fidelity (a preset name) and training seed of ``fidelities``
    (``{"fast": [0, 1]}``) with the live scorer, through the results store ``store`` (the resume point), with
    ``workers`` processes of ``threads`` torch threads each; then write the table to ``out``. ``ship_teacher``
    copies the teacher checkpoint beside the table (``<out stem>.teacher.pt``), for small teachers.

    ``pool(fidelity)``, when given, makes an asynchronous scorer of the same scoring key (e.g. a
    :class:`~ddc_env.scoring.ray.RayScorer` with this ``protocol`` and ``threads``) that scores instead of the
    processes; this process alone writes its records to the store, and stops each pool (``shutdown`` or
    ``close``) when its fidelity is done."""
    from tqdm.auto import tqdm

    task = load_task(task_config, progress=progress)
    labelled = tuple((f"{fid}/seed{seed}", dataclasses.replace(make_fidelity(fid), seed=seed))
                     for fid, seeds in fidelities.items() for seed in seeds)
    job = _Job(task_config, labelled, protocol, os.fspath(store), name, threads, device)
    items = [(label, choices) for label, fidelity in labelled
             for choices, _ in students[fidelity.name]]
    scorers = _scorers(job, task)
    todo = [(label, choices) for label, choices in items
            if scorers[label].cached(task.student_spec(choices)) is None]
    start = time.perf_counter()
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=f"table {name}", unit="student",
              disable=bar_disable(progress)) as bar:
        if pool is not None:
            for label, fidelity in labelled:
                specs = [task.student_spec(choices) for lab, choices in todo if lab == label]
                if specs:
                    _score_on_pool(pool(fidelity), specs, job, bar)
        elif workers <= 1:
            for label, choices in todo:
                scorers[label].score(task.student_spec(choices))
                bar.update()
        else:
            chunks = [todo[i:i + 8] for i in range(0, len(todo), 8)]
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for chunk, _ in zip(chunks, pool.map(_work, itertools.repeat(job), chunks)):
                    bar.update(len(chunk))
    rows, choices_of = [], {}
    teachers: dict[str, dict[str, Any]] = {}
    for label, fidelity in labelled:
        scorer = scorers[label]
        teachers.setdefault(fidelity.name, scorer.teacher_record())
        for choices, spec in students[fidelity.name]:
            record = scorer.cached(spec)
            if record is None:
                raise TableError(f"the build of {name!r} is missing {label} for student {spec.hash()}")
            rows.append(_row(record, fidelity.name, fidelity.seed))
            choices_of.setdefault(spec.hash(), _recorded(task, choices))
    all_specs = [spec for pairs in students.values() for _, spec in pairs] + covering_specs(task)
    latency = LatencyModel(protocol)
    table_meta = {**(meta or {}), "threads": threads, "device": device, "build_seconds": time.perf_counter() - start,
                  "device_signature": compute_signature(device)["device_signature"],
                  "default_fidelity": next(iter(fidelities)),
                  "fidelities": {fid: {"seeds": list(seeds),
                                       "fidelity": dataclasses.asdict(make_fidelity(fid)),
                                       "precision": compute_signature(device, make_fidelity(fid).amp)["precision"],
                                       "teacher": teachers[fid]} for fid, seeds in fidelities.items()}}
    table = BenchTable(name, dataclasses.replace(task, teacher=None, data=None), table_meta,
                       {"describe": latency.describe(), "units": latency.entries(all_specs)}, choices_of, rows)
    table.save(out)
    if ship_teacher:
        teacher, _ = task.require_live("shipping the teacher")
        target = Path(out).with_name(Path(out).name.removesuffix(".json.gz") + ".teacher.pt")
        shutil.copyfile(teacher.path, target)
        shutil.copyfile(sidecar_path(teacher.path), sidecar_path(target))
    return table


def extend_table(table: BenchTable, students: Sequence[tuple[dict[str, Any], NetSpec]], out: str | os.PathLike[str],
                 *, store: str | os.PathLike[str], fidelity: str | None = None, threads: int | None = None,
                 command: str = "", progress: bool = True) -> BenchTable:
    """Add ``students`` (choices, spec) the table lacks at ``fidelity`` (default its default fidelity), scored live
    here at each of the fidelity's training seeds with the table's own task, recipe and latency table, through the
    results store ``store`` (a killed extension continues where it stopped); write the table to ``out``.

    For the students a surrogate twin's agents reach, where its fit has few rows and extrapolates. The extension is
    recorded in ``meta["extensions"]`` (its command, the students it added, the machine and precision they were
    trained with: :meth:`BenchTable.compute` answers per student)."""
    from tqdm.auto import tqdm

    fidelity = table.check_fidelity(fidelity or table.default_fidelity)
    recorded = table.meta["fidelities"][fidelity]["fidelity"]
    if recorded != dataclasses.asdict(make_fidelity(fidelity)):
        raise TableError(f"the preset {fidelity!r} changed since table {table.name!r} was built: its rows and new "
                         "ones would not be comparable")
    task = live_task(table, progress=progress)
    known = set(table.spec_hashes(fidelity))
    new = list({spec.hash(): (choices, spec) for choices, spec in students if spec.hash() not in known}.values())
    for _, spec in new:
        try:
            table.latency_model().predict_ms(spec)
        except KeyError as error:
            raise TableError(f"student {spec.hash()} is not one table {table.name!r} can hold: {error.args[0]}") from None
    threads = threads or table.meta.get("threads", 1)
    protocol = table.latency_model().protocol
    scorers = [CachedScorer(LiveScorer(task, dataclasses.replace(make_fidelity(fidelity), seed=seed), latency="model",
                                       latency_model=table.latency_model(), latency_protocol=protocol, device="cpu",
                                       threads=threads), ResultsStore(store), run=table.name, method="table")
               for seed in table.seeds(fidelity)]
    rows = list(table.rows)
    choices_of = dict(table.choices)
    with tqdm(total=len(new) * len(scorers), desc=f"extend {table.name}", unit="student",
              disable=bar_disable(progress)) as bar:
        for (choices, spec), (scorer, seed) in itertools.product(new, zip(scorers, table.seeds(fidelity))):
            record = scorer.score(spec)
            rows.append(_row(record, fidelity, seed))
            choices_of[spec.hash()] = _recorded(task, choices)
            bar.update()
    extension = {"command": command, "fidelity": fidelity, "spec_hashes": {fidelity: [s.hash() for _, s in new]},
                 "compute": {fidelity: compute_signature("cpu", table.fidelity_amp(fidelity))}, "threads": threads,
                 "date": time.strftime("%Y-%m-%d")}
    meta = {**table.meta, "extensions": [*table.meta.get("extensions", []), extension]}
    extended = dataclasses.replace(table, meta=meta, choices=choices_of, rows=rows, path=None)
    extended.save(out)
    return extended


def measure_latency_table(table: BenchTable, name: str, *, protocol: LatencyProtocol | None = None,
                          progress: bool = True) -> dict[str, Any]:
    """Time every unit of ``table``'s latency table on this machine (``protocol``: default the current protocol at
    the table's threads and batch size) into a unit table stored under ``name`` in ``table.latencies``; returns the
    entry (``{"describe": ..., "units": ...}``; describe includes this machine's signature). Units already measured
    on this machine with that protocol come from the latency cache."""
    from tqdm.auto import tqdm

    if not name or name == "build" or not isinstance(name, str):
        raise TableError(f"a device table needs a name other than 'build', got {name!r}")
    describe = table.latency["describe"]
    protocol = protocol or LatencyProtocol(threads=describe["threads"], batch_size=describe["batch_size"])
    model = LatencyModel(protocol)
    units = {}
    for key in tqdm(table.latency["units"], desc=f"latency of {table.name} units", unit="unit",
                    disable=bar_disable(progress)):
        fields = json.loads(key)
        shape = tuple(fields.pop("input"))
        unit = UNIT_TYPES[fields.pop("type")](name="unit", **fields)
        if unit_key(unit, shape) != key:
            raise TableError(f"unit key {key} does not rebuild to itself")
        units[key] = model.unit_ms(unit, shape)
    entry = {"describe": {**model.describe(), "signature": model.signature}, "units": units}
    table.latencies[name] = entry
    return entry


def live_task(table: BenchTable, *, progress: bool = False) -> Task:
    """The live task a table was built from (its env's arguments; the teacher shipped beside the table, if any), for
    scoring its students for real; a TableError when it is not the table's task (another teacher or data)."""
    kwargs = dict(table.meta.get("env_kwargs", {}))
    shipped = table.path.with_name(table.path.name.removesuffix(".json.gz") + ".teacher.pt") if table.path else None
    if shipped is not None and shipped.is_file():
        kwargs["teacher"] = str(shipped)
    task = load_task(env_config(table.meta["env_id"], kwargs).task_config(), progress=progress)
    if task.key() != table.task.key():
        raise TableError(f"the live task of table {table.name!r} is not the one the table was built on (another "
                         f"teacher, data or decisions): {task.name}")
    return task


def _score_on_pool(scorer: Scorer, specs: Sequence[NetSpec], job: _Job, bar: Any) -> None:
    """Score ``specs`` on an asynchronous scorer, each record written to the job's store as it arrives."""
    cached = CachedScorer(scorer, ResultsStore(job.store), run=job.run, method="table")
    try:
        for future in as_completed([cached.submit(spec) for spec in specs]):
            future.result()
            bar.update()
    finally:
        getattr(scorer, "shutdown", scorer.close)()
