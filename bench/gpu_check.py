"""Is the live env ready for a GPU? On a CUDA machine, with the shared ResNet-18 teacher and the CIFAR-10 JPEG copy:

1. train the half-width ResNet-18 student for one `standard` epoch (the KD recipe's bf16 autocast and channels_last
   where the GPU has bf16), report images/s and validation accuracy;
2. run a 5-episode `ddc search` (random agent) at `fast` on the GPU;
3. run the same search on a local Ray pool of 2 workers sharing the GPU (`--gpus-per-worker 0.5`);

then print one summary table. On a machine without CUDA it says so and exits 0. Meant to finish in under 8 minutes
on one H100-class GPU; every step is timed.

    python bench/gpu_check.py --teacher ../shared/teachers/resnet18_cifar10jpeg.pt --data-dir ../shared/data/cifar10_jpeg
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


def train_one_epoch(teacher: Path, data_dir: Path) -> dict[str, float | str]:
    """The half-width student's one `standard` KD epoch on the GPU: images/s and validation accuracy."""
    from ddc_env.arch import uniform_choices
    from ddc_env.scoring import LiveScorer
    from ddc_env.task import TaskConfig, load_task

    task = load_task(TaskConfig(model="resnet18", teacher=str(teacher), dataset="cifar10_jpeg",
                                data_dir=str(data_dir), device="cuda"), progress=False)
    scorer = LiveScorer(task, {"name": "standard", "epochs": 1}, latency="flops", device="cuda")
    start = time.perf_counter()
    record = scorer.evaluate(task.student_spec(uniform_choices(task.teacher_spec, 0.5)))
    precision = scorer.distiller.precision
    return {"images/s": record["train_images_per_second"], "val_acc": record["val_acc"],
            "seconds": time.perf_counter() - start, "precision": precision.name,
            "channels_last": str(precision.channels_last)}


def search(teacher: Path, data_dir: Path, out: Path, *backend: str) -> dict[str, float | str]:
    """A 5-episode random search at `fast` on the GPU through the `ddc` command (optionally on a Ray pool)."""
    command = [sys.executable, "-m", "ddc_env", "search", "--config", "resnet18_cifar10_random", "--episodes", "5",
               "--out", str(out), "--quiet", "--set", "env_kwargs.fidelity=fast", "env_kwargs.device=cuda",
               f"env_kwargs.teacher={teacher}", "env_kwargs.dataset=cifar10_jpeg", f"env_kwargs.data_dir={data_dir}",
               *backend]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        return {"status": f"failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}", "seconds": seconds}
    episodes = (out / "episodes.jsonl").read_text().count("\n")
    return {"status": "ok", "episodes": episodes, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=SHARED / "teachers" / "resnet18_cifar10jpeg.pt")
    parser.add_argument("--data-dir", type=Path, default=SHARED / "data" / "cifar10_jpeg")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here: this check is for a GPU machine (nothing to do)")
        return 0
    for path in (args.teacher, args.data_dir):
        if not path.exists():
            print(f"gpu_check: {path} does not exist (pass --teacher / --data-dir)", file=sys.stderr)
            return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"bf16 {torch.cuda.is_bf16_supported()}")
    rows = {}
    start = time.perf_counter()
    rows["standard epoch, half-width ResNet-18"] = train_one_epoch(args.teacher.resolve(), args.data_dir.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        rows["ddc search, 5 episodes at fast"] = search(args.teacher.resolve(), args.data_dir.resolve(),
                                                        Path(tmp) / "local")
        rows["ddc search on Ray, 2 workers x 0.5 GPU"] = search(
            args.teacher.resolve(), args.data_dir.resolve(), Path(tmp) / "ray", "--backend", "ray", "--workers", "2",
            "--gpus-per-worker", "0.5")
    print("\n| step | result | seconds |\n|---|---|---|")
    for step, row in rows.items():
        facts = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                          if k != "seconds")
        print(f"| {step} | {facts} | {row['seconds']:.0f} |")
    total = time.perf_counter() - start
    print(f"\nall steps: {total:.0f} s ({'within' if total < 480 else 'over'} the 8-minute goal)")
    return 0 if all(row.get("status", "ok") == "ok" for row in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
