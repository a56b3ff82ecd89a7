"""What one student evaluation costs and gives: the shared ResNet-18 teacher on the CIFAR-10 JPEG copy.

Evaluates uniform-width students of ../shared/teachers/resnet18_cifar10jpeg.pt at a fidelity (default
``fast``) and prints, per student: val accuracy (on the every-10th validation split the teacher never saw),
params / FLOPs / latency-model ratios, KD training throughput and seconds per evaluation. The teacher's
views (augmented images + logits) are made once, before the first student, and timed separately.

    .venv/bin/python bench/evaluate_resnet18.py --fidelity fast --widths 0.75 0.5 0.25
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ddc_env.arch import uniform_choices
from ddc_env.scoring import LiveScorer
from ddc_env.task import TaskConfig, load_task

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fidelity", default="fast")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.75, 0.5, 0.25])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared folder (teachers/, data/)")
    args = parser.parse_args()

    task = load_task(TaskConfig(model="resnet18", teacher=str(args.shared / "teachers" / "resnet18_cifar10jpeg.pt"),
                                dataset="cifar10_jpeg", data_dir=str(args.shared / "data" / "cifar10_jpeg")))
    scorer = LiveScorer(task, args.fidelity, device="cpu")
    ev, fidelity = scorer.distiller, scorer.distiller.fidelity
    t0 = time.perf_counter()
    t = scorer.teacher_record()
    t1 = time.perf_counter()
    ev.teacher_views()
    t2 = time.perf_counter()
    print(f"fidelity {fidelity}")
    print(f"teacher: val acc {t['val_acc']:.4f} on {len(ev.val_y)} val images, latency model {t['latency_ms']:.2f} "
          f"ms (batch 1); teacher record {t1 - t0:.1f} s, {fidelity.views} view(s) of {len(ev.train_y)} images "
          f"with logits {t2 - t1:.1f} s")
    print("| width | val acc | params ratio | FLOPs ratio | latency ratio | train img/s | eval s |")
    print("|---|---|---|---|---|---|---|")
    for w in args.widths:
        r = scorer.evaluate(task.student_spec(uniform_choices(task.teacher_spec, w)))
        print(f"| {w:g} | {r['val_acc']:.4f} | {r['param_ratio']:.3f} | {r['flop_ratio']:.3f} | "
              f"{r['latency_ratio']:.3f} | {r['train_images_per_second']:.0f} | {r['eval_seconds']:.1f} |")


if __name__ == "__main__":
    main()
