"""Is the reward's time reproducible? The student/teacher time ratio of fixed students across fresh processes, and
the latency model checked against direct measurement.

(a) Five fixed students of each teacher (LeNet-5 as ``DDC-LeNet5-MNIST`` times it: the packaged ``mnist_sample``'s
1x28x28 inputs, batch 256; ResNet-18 with the CIFAR stem and VGG-16 as ``DDC-ResNet18-CIFAR10`` and
``DDC-VGG16-CIFAR10`` time them: batch 1), each timed in ``--processes`` fresh processes run one after another, four
ways:

- ``model, shared cache``: the latency model (:class:`ddc_env.latency.LatencyModel`) reading one unit table that
  every process shares (the first process measures the units, the others read them): what the env's reward uses;
- ``model, fresh cache``: the latency model with an empty table in every process, so every unit is measured again:
  how stable the per-unit protocol itself is;
- ``model, fresh cache, unguarded``: the same without the guard (``unit_attempts=1``: a unit timed in one of the
  machine's slow phases keeps its time), side by side with the guarded protocol in the same processes;
- ``paired``: student and teacher built and timed directly in interleaved rounds
  (:func:`ddc_env.latency.measure_paired`).

For each student and way the table shows the median ratio over processes and its relative spread
(max - min) / median; the target for the reward's time (the shared model) is <= 5%.

(b) ``--random`` random students per teacher (every decision drawn among what it allows): the model's ratio against
the paired measured ratio, Pearson and Spearman correlation, in one process.

Only architectures are needed (random weights: time does not depend on them). Every unit table lives in a temporary
directory; nothing is written to ``$DDC_HOME``.

    .venv/bin/python bench/latency_repro.py --processes 5 --random 30
    .venv/bin/python bench/latency_repro.py --archs vgg16 --processes 5 --random 30
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from ddc_env.arch import N2N_WIDTHS, REMOVE, NetSpec, apply_decisions, build, decision_table, uniform_choices
from ddc_env.latency import LatencyModel, LatencyProtocol, measure_paired, timing_copy
from ddc_env.models import get_model_spec
from ddc_env.train import compute_signature

# what the env's ids time: (zoo model, model kwargs, channel_round, min_channels, latency batch size)
ARCHS: dict[str, tuple[str, dict[str, Any], int, int, int]] = {
    "LeNet-5 (mnist_sample, batch 256)": ("lenet5", {"num_classes": 10, "in_channels": 1, "input_size": (28, 28)},
                                          2, 2, 256),
    "ResNet-18 (CIFAR stem, batch 1)": ("resnet18", {"num_classes": 10, "stem": "cifar"}, 8, 8, 1),
    "VGG-16 (CIFAR, batch 1)": ("vgg16", {"num_classes": 10}, 8, 8, 1),
}
VGG16_BLOCKS = (("features.0", "features.1"), ("features.3", "features.4"), ("features.6", "features.7", "features.8"),
                ("features.10", "features.11", "features.12"), ("features.14", "features.15", "features.16"))


def vgg16_blocks(*widths: float) -> dict[str, float]:
    """One width per VGG-16 conv block."""
    return {name: w for block, w in zip(VGG16_BLOCKS, widths) for name in block}



# five fixed students per teacher: decision name -> "remove" | width, or one width for every shrinkable decision
STUDENTS: dict[str, dict[str, dict[str, Any] | float]] = {
    "lenet5": {
        "conv1 0.5": {"conv1": 0.5},
        "conv2 0.5, fc1 0.5": {"conv2": 0.5, "fc1": 0.5},
        "fc1 removed, conv1 0.7": {"fc1": "remove", "conv1": 0.7},
        "uniform 0.5": 0.5,
        "uniform 0.25": 0.25,
    },
    "resnet18": {
        "layer1.1, layer2.1 removed": {"layer1.1": "remove", "layer2.1": "remove"},
        "stage4 0.5": {"stage4": 0.5, "layer4.0": 0.5, "layer4.1": 0.5},
        "stage1 0.5, layer3.1 removed": {"stage1": 0.5, "layer3.1": "remove"},
        "uniform 0.5": 0.5,
        "uniform 0.25": 0.25,
    },
    "vgg16": {
        "early wide, late thin": vgg16_blocks(0.7, 0.6, 0.5, 0.25, 0.25),
        "early thin, late wide": vgg16_blocks(0.4, 0.4, 0.5, 0.8, 1.0),
        "evolution's (earn_its_keep, seed 0)": {
            "features.0": 0.8, "features.1": 0.8, "features.3": 1.0, "features.4": 0.8, "features.6": "remove",
            "features.7": 0.9, "features.8": 0.7, "features.10": 1.0, "features.11": 0.7, "features.12": 0.25,
            "features.14": "remove", "features.15": 0.25, "features.16": "remove", "classifier.0": 0.25},
        "uniform 0.5": 0.5,
        "uniform 0.25": 0.25,
    },
}
MODES = ("model, shared cache", "model, fresh cache", "model, fresh cache, unguarded", "paired")


def teacher_and_students(arch: str, choices: dict[str, dict[str, Any] | float]
                         ) -> tuple[NetSpec, dict[str, NetSpec]]:
    """The teacher spec of ``arch`` and the student spec of each labelled choice set."""
    model, kwargs, channel_round, min_channels, _ = ARCHS[arch]
    teacher = get_model_spec(model, **kwargs)
    students = {}
    for label, c in choices.items():
        c = uniform_choices(teacher, c) if isinstance(c, float) else c
        students[label] = apply_decisions(teacher, c, channel_round=channel_round, min_channels=min_channels)
    return teacher, students


def ratios(arch: str, students: dict[str, NetSpec], teacher: NetSpec,
           model: LatencyModel | None) -> tuple[dict[str, float], float]:
    """(label -> student/teacher time ratio, the teacher's ms): from ``model``'s unit table, or, with ``model``
    None, measured directly in interleaved rounds."""
    if model is not None:
        teacher_ms = model.predict_ms(teacher)
        return {label: model.predict_ms(s) / teacher_ms for label, s in students.items()}, teacher_ms
    protocol = LatencyProtocol(batch_size=ARCHS[arch][4])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher_net = timing_copy(build(teacher))
        nets = {label: timing_copy(build(s)) for label, s in students.items()}
    out, teacher_ms = {}, []
    for label, net in nets.items():
        paired = measure_paired(net, teacher_net, (teacher.in_channels, *teacher.input_size), protocol)
        out[label] = paired.ratio
        teacher_ms.append(paired.teacher_ms)
    return out, statistics.median(teacher_ms)


def latency_model(arch: str, path: Path, guarded: bool = True) -> LatencyModel:
    """The latency model the env uses for ``arch`` (its protocol), on the unit table at ``path`` (``guarded``
    False: one attempt per unit)."""
    return LatencyModel(LatencyProtocol(batch_size=ARCHS[arch][4], **({} if guarded else {"unit_attempts": 1})),
                        path=path)


def worker(archs: list[str], shared: Path, fresh: Path) -> dict[str, Any]:
    """One fresh process's ratios: arch -> mode -> label -> ratio, and the teacher's ms per arch and mode."""
    out: dict[str, Any] = {}
    for arch in archs:
        teacher, students = teacher_and_students(arch, STUDENTS[ARCHS[arch][0]])
        out[arch] = {}
        models = (latency_model(arch, shared), latency_model(arch, fresh),
                  latency_model(arch, fresh.with_suffix(".unguarded.sqlite"), guarded=False), None)
        for mode, model in zip(MODES, models):
            r, teacher_ms = ratios(arch, students, teacher, model)
            out[arch][mode] = {"ratios": r, "teacher_ms": teacher_ms}
    return out


def random_students(arch: str, n: int, seed: int) -> tuple[NetSpec, dict[str, NetSpec]]:
    """``n`` random students of ``arch``: every decision draws "remove" (when allowed) or one of N2N's widths."""
    rng = np.random.default_rng(seed)
    teacher, _ = teacher_and_students(arch, {})
    choices = {}
    for i in range(n):
        c = {}
        for d in decision_table(teacher):
            options = [*([REMOVE] if d.removable else []), *(N2N_WIDTHS if d.shrinkable else [1.0])]
            c[d.name] = options[rng.integers(len(options))]
        choices[f"random {i}"] = c
    return teacher_and_students(arch, choices)


def relative_spread(values: list[float]) -> float:
    """(max - min) / median."""
    return (max(values) - min(values)) / statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=5, help="fresh processes for (a) (default 5)")
    parser.add_argument("--random", type=int, default=30, help="random students per teacher for (b) (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random students")
    parser.add_argument("--archs", nargs="+", default=[ARCHS[a][0] for a in ARCHS],
                        choices=[ARCHS[a][0] for a in ARCHS], help="teachers (default: all)")
    parser.add_argument("--worker", nargs=2, metavar=("SHARED", "FRESH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    archs = [a for a in ARCHS if ARCHS[a][0] in args.archs]
    if args.worker:
        print(json.dumps(worker(archs, Path(args.worker[0]), Path(args.worker[1]))))
        return
    print(f"machine: {compute_signature('cpu')}; protocol: {LatencyProtocol()}")

    with tempfile.TemporaryDirectory(prefix="latency_repro_") as tmp:
        root = Path(tmp)
        runs = []
        for i in range(args.processes):
            env = {**os.environ, "DDC_HOME": str(root / f"home{i}")}  # nothing reaches the user's DDC_HOME
            done = subprocess.run([sys.executable, __file__, "--archs", *args.archs, "--worker",
                                   str(root / "shared.sqlite"), str(root / f"fresh{i}.sqlite")], env=env,
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.splitlines()[-1]))
            print(f"process {i + 1}/{args.processes} done", file=sys.stderr)

        print(f"(a) student/teacher time ratio across {args.processes} fresh processes: median, relative spread "
              f"(max - min) / median\n")
        for arch in archs:
            print(f"{arch}; teacher ms per process: " + "; ".join(
                f"{mode}: " + ", ".join(f"{run[arch][mode]['teacher_ms']:.2f}" for run in runs) for mode in MODES))
            print(f"| student | {' | '.join(MODES)} |\n|---|{'---|' * len(MODES)}")
            worst = dict.fromkeys(MODES, 0.0)
            for label in STUDENTS[ARCHS[arch][0]]:
                cells = []
                for mode in MODES:
                    values = [run[arch][mode]["ratios"][label] for run in runs]
                    spread = relative_spread(values)
                    worst[mode] = max(worst[mode], spread)
                    cells.append(f"{statistics.median(values):.3f} ({100 * spread:.1f}%)")
                print(f"| {label} | {' | '.join(cells)} |")
            print(f"| **max spread** | {' | '.join(f'**{100 * worst[m]:.1f}%**' for m in MODES)} |\n")

        print(f"(b) latency model (shared cache) vs paired measurement, {args.random} random students per teacher\n")
        print("| teacher | Pearson | Spearman | model / measured ratio: median (min-max) |\n|---|---|---|---|")
        for arch in archs:
            teacher, students = random_students(arch, args.random, args.seed)
            model, _ = ratios(arch, students, teacher, latency_model(arch, root / "shared.sqlite"))
            measured, _ = ratios(arch, students, teacher, None)
            x = np.array([model[k] for k in students])
            y = np.array([measured[k] for k in students])
            q = x / y
            print(f"| {arch} | {pearsonr(x, y)[0]:.3f} | {spearmanr(x, y)[0]:.3f} | "
                  f"{np.median(q):.2f} ({q.min():.2f}-{q.max():.2f}) |")


if __name__ == "__main__":
    main()
