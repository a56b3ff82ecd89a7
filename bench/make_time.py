"""How cheap is making a live env? ``gym.make`` of a live id takes its spaces from the light task (the teacher's
sidecar, the dataset catalog) and loads the teacher and the data on the first scoring; side by side in one run:
``gym.make`` alone, and loading the task (teacher + data) as the first scoring does, each in a fresh process.

    .venv/bin/python bench/make_time.py --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETUP = ("import time, gymnasium as gym, ddc_env\n"
         "from ddc_env.task import TaskConfig, load_task\n"
         f"kwargs = dict(teacher={str(SHARED / 'teachers' / 'resnet18_cifar10jpeg.pt')!r}, dataset='cifar10_jpeg', "
         f"data_dir={str(SHARED / 'data' / 'cifar10_jpeg')!r})\n")
CASES = {
    "gym.make (light task)": "t = time.perf_counter(); gym.make('DDC-ResNet18-CIFAR10', fidelity='zero', **kwargs)",
    "load_task (teacher + data)": "t = time.perf_counter(); load_task(TaskConfig(model='resnet18', **kwargs), "
                                  "progress=False)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ddc_env.train import compute_signature

    print(f"machine: {compute_signature('cpu')}")
    seconds: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):  # interleaved, each in a fresh process (imports excluded from the timing)
        for name, code in CASES.items():
            out = subprocess.run([sys.executable, "-c", SETUP + code + "\nprint(time.perf_counter() - t)"],
                                 capture_output=True, text=True, check=True).stdout
            seconds[name].append(float(out.strip().splitlines()[-1]))
    print("| what | median seconds | runs |\n|---|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {statistics.median(values):.3f} | {', '.join(f'{v:.3f}' for v in values)} |")
    light, full = (statistics.median(v) for v in seconds.values())
    print(f"\nmaking the env costs {light / full:.3f} of loading its task")


if __name__ == "__main__":
    main()
