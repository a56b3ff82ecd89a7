"""Our student evaluator against an N2N-faithful one, side by side in one run, on the same specs and data.

N2N-faithful: the student built from random init, fp32, a torch DataLoader over the training images with
per-sample augmentation, the teacher's forward pass on every batch, L2 loss on logits, Adam 5e-4 (N2N's KD).
Ours: inherit + BatchNorm recalibration + cached teacher logits + bf16 autocast / channels_last, Hinton KD
(the ``fast`` fidelity's settings, here one epoch). Both train one epoch on the same training images and are
scored on the same validation images; runs alternate (ours, N2N, ours, N2N, ...) so machine noise hits both.
Also prints the KD overhead: our KD step time over a plain cross-entropy step of the same student.

    .venv/bin/python bench/eval_speed.py --train 5000 --val 2000
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ddc_env.arch import REMOVE, NetSpec, apply_decisions, build, decision_table, uniform_choices
from ddc_env.data import augment, normalize
from ddc_env.distill import Distiller, distillation_loss, make_fidelity
from ddc_env.models.checkpoints import load_teacher
from ddc_env.scoring import LiveScorer
from ddc_env.task import TaskConfig, load_task
from ddc_env.train import Precision

SHARED = Path(__file__).resolve().parents[2] / "shared"


class AugmentedImages(Dataset):
    """Per-sample pad-4 random crop + flip and normalisation, the torchvision-style way (one image at a time)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 seed: int) -> None:
        self.x, self.y, self.mean, self.std = x, y, mean, std
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = augment(self.x[i:i + 1], self.gen)
        return normalize(img, self.mean, self.std)[0], self.y[i]


def n2n_faithful(teacher: torch.nn.Module, spec: NetSpec, x: torch.Tensor, y: torch.Tensor, val_x: torch.Tensor,
                 val_y: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[float, float]:
    """(training images per second, val accuracy) of one epoch of N2N-style KD from random init."""
    torch.manual_seed(0)
    student = build(spec).train()
    opt = torch.optim.Adam(student.parameters(), lr=5e-4)
    loader = DataLoader(AugmentedImages(x, y, mean, std, seed=0), batch_size=128, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    teacher.eval()
    start = time.perf_counter()
    for xb, _ in loader:
        with torch.no_grad():
            t = teacher(xb)
        loss = F.mse_loss(student(xb), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    student.eval()
    with torch.no_grad():
        correct = sum((student(normalize(val_x[i:i + 500], mean, std)).argmax(1) == val_y[i:i + 500]).sum().item()
                      for i in range(0, len(val_y), 500))
    return len(y) / seconds, correct / len(val_y)


def kd_overhead(ev: Distiller, spec: NetSpec, steps: int = 30) -> float:
    """Median time of our KD step over a cross-entropy step of the same inherited student (same batches)."""
    images, logits = ev.teacher_views()
    kd_loss = distillation_loss(ev.fidelity)
    precision: Precision = ev.precision
    times: dict[str, list[float]] = {"kd": [], "ce": []}
    for kind in ("kd", "ce") * 2:
        torch.manual_seed(0)
        net = precision.prepare(build(spec))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        for step in range(steps + 5):
            idx = torch.arange(step * 128, (step + 1) * 128) % len(ev.train_y)
            xb = normalize(images[0, idx], ev.data.mean, ev.data.std)
            start = time.perf_counter()
            with precision.autocast(ev.device):
                out = net(precision.inputs(xb))
                loss = kd_loss(out, ev.train_y[idx], logits[0, idx]) if kind == "kd" else F.cross_entropy(
                    out.float(), ev.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= 5:  # warm-up
                times[kind].append(time.perf_counter() - start)
    return statistics.median(times["kd"]) / statistics.median(times["ce"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=5000, help="training images (class-stratified)")
    parser.add_argument("--val", type=int, default=2000, help="validation images")
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()

    task = load_task(TaskConfig(model="resnet18", teacher=str(args.shared / "teachers" / "resnet18_cifar10jpeg.pt"),
                                dataset="cifar10_jpeg", data_dir=str(args.shared / "data" / "cifar10_jpeg")))
    teacher, data = task.teacher, task.data
    fidelity = make_fidelity({"name": "fast", "epochs": 1, "views": 1, "train_samples": args.train,
                              "val_samples": args.val})
    scorer = LiveScorer(task, fidelity, device="cpu", latency="flops")
    ev = scorer.distiller
    start = time.perf_counter()
    ev.teacher_views()
    views_seconds = time.perf_counter() - start
    fp32_teacher = load_teacher(args.shared / "teachers" / "resnet18_cifar10jpeg.pt").net  # N2N: fp32, NCHW

    rng = random.Random(0)
    table = decision_table(teacher.spec)
    random_spec = {d.name: (REMOVE if d.removable and rng.random() < 0.3 else rng.choice([0.25, 0.5, 0.75]))
                   for d in table if d.shrinkable}
    specs = {"uniform 0.5": apply_decisions(teacher.spec, uniform_choices(teacher.spec, 0.5)),
             "random": apply_decisions(teacher.spec, random_spec)}
    print(f"ResNet-18 teacher (CIFAR-10 JPEG copy), {len(ev.train_y)} training / {len(ev.val_y)} val images, "
          f"one epoch each; teacher logits for ours made once per search in {views_seconds:.1f} s")
    print("| student | params ratio | ours img/s | N2N img/s | speed-up | ours val acc | N2N val acc |")
    print("|---|---|---|---|---|---|---|")
    for name, spec in specs.items():
        ours = scorer.evaluate(spec)
        theirs_speed, theirs_acc = n2n_faithful(fp32_teacher, spec, ev.train_x, ev.train_y, ev.val_x, ev.val_y,
                                                data.mean, data.std)
        ours_speed = ours["train_images_per_second"]
        print(f"| {name} | {spec.params / teacher.spec.params:.3f} | {ours_speed:.0f} | {theirs_speed:.0f} | "
              f"{ours_speed / theirs_speed:.1f}x | {ours['val_acc']:.4f} | {theirs_acc:.4f} |")
    ratio = kd_overhead(ev, specs["uniform 0.5"])
    print(f"KD overhead (our KD step / cross-entropy step, uniform 0.5 student): {ratio:.3f}")


if __name__ == "__main__":
    main()
