"""Does a busy machine stay in the latency table? The unit table keeps the first measurement of every unit, so a unit
first timed while other work loads the machine used to keep a slow time for good (this machine's table once read a
LeNet-5 uniform-0.25 student at ratio 0.64 instead of 0.40, and the live reward lost its spread).

For each teacher (as the envs time it, see ``latency_repro.py``) and three ways to time a unit (protocol v2: the
fastest of 15 rounds of about 4 ms; v3: the fastest of 120 rounds of about 0.5 ms, the same time spent; v4, the
default now: v3 in up to 3 attempts guarded by a reference conv, see ``ddc_env.latency``), three unit tables:

- ``quiet``: teacher and students timed on an idle machine (the truth);
- ``teacher quiet, students loaded``: the teacher's units timed idle, then the students' new units timed while
  ``--load`` busy processes run (what happened to this machine's table);
- ``all loaded``: every unit timed under load.

The table shows, per teacher and way, the students' student/teacher time ratios against the quiet table's:
median and max relative error over the five fixed students of ``latency_repro.py`` and ``--random`` random ones.
Run it on an otherwise idle machine (it makes its own load). Unit tables live in a temporary directory.

    .venv/bin/python bench/latency_load.py --load 2 --random 10
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from latency_repro import ARCHS, STUDENTS, random_students, teacher_and_students
from torch import nn

from ddc_env.arch import NetSpec
from ddc_env.latency import LatencyModel, LatencyProtocol


def _busy(stop: mp.Event) -> None:  # type: ignore[valid-type]
    """What loads a machine that searches: a small CNN trained on one thread."""
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    while not stop.is_set():
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()


@contextmanager
def machine_load(processes: int) -> Iterator[None]:
    """``processes`` single-threaded busy processes (CNN training) for the duration of the block (0: none)."""
    if processes == 0:
        yield
        return
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    workers = [ctx.Process(target=_busy, args=(stop,), daemon=True) for _ in range(processes)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    try:
        yield
    finally:
        stop.set()
        for w in workers:
            w.join()


UNIT_TIMING = {"v2: 15 rounds x 4 ms": {"unit_rounds": 15, "unit_round_ms": 4.0, "unit_attempts": 1},
               "v3: 120 rounds x 0.5 ms": {"unit_rounds": 120, "unit_round_ms": 0.5, "unit_attempts": 1},
               "v4: v3, guarded": {}}


def table_ratios(arch: str, timing: dict[str, float], path: Path, teacher: NetSpec, students: dict[str, NetSpec],
                 load_teacher: int, load_students: int) -> dict[str, float]:
    """Student/teacher ratios from a fresh unit table at ``path``: the teacher's units timed under
    ``load_teacher`` busy processes, then the students' under ``load_students``."""
    model = LatencyModel(LatencyProtocol(batch_size=ARCHS[arch][4], **timing), path=path)
    with machine_load(load_teacher):
        teacher_ms = model.predict_ms(teacher)
    with machine_load(load_students):
        return {label: model.predict_ms(s) / teacher_ms for label, s in students.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, default=2, help="busy processes while loaded (default 2)")
    parser.add_argument("--random", type=int, default=10, help="random students per teacher (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scenarios = {"teacher quiet, students loaded": (0, args.load), "all loaded": (args.load, args.load)}
    print(f"| teacher | unit timing | {' | '.join(scenarios)} |\n|---|---|{'---|' * len(scenarios)}")
    with tempfile.TemporaryDirectory(prefix="latency_load_") as tmp:
        for arch in ARCHS:
            teacher, fixed = teacher_and_students(arch, STUDENTS[ARCHS[arch][0]])
            _, rand = random_students(arch, args.random, args.seed)
            students = {**fixed, **rand}
            for i, (way, timing) in enumerate(UNIT_TIMING.items()):
                tag = f"{ARCHS[arch][0]}-{i}"
                truth = table_ratios(arch, timing, Path(tmp) / f"{tag}-quiet.sqlite", teacher, students, 0, 0)
                cells = []
                for name, (load_teacher, load_students) in scenarios.items():
                    got = table_ratios(arch, timing, Path(tmp) / f"{tag}-{name}.sqlite", teacher, students,
                                       load_teacher, load_students)
                    errors = [abs(got[k] / truth[k] - 1.0) for k in students]
                    cells.append(f"{100 * statistics.median(errors):.1f}% / {100 * max(errors):.1f}%")
                print(f"| {arch} | {way} | {' | '.join(cells)} |", flush=True)
    print(f"\nCells: median / max relative error of the ratio against the quiet table ({len(students)} students "
          f"per teacher, {args.load} busy processes).")


if __name__ == "__main__":
    main()
