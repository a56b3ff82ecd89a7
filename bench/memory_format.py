"""Memory format on the CPU: training and inference throughput of the zoo's CIFAR teachers in contiguous (NCHW) and
channels_last (NHWC) layout, in the precision training uses here, measured side by side in interleaved rounds.

    .venv/bin/python bench/memory_format.py --rounds 5

Prints the CPU and precision, then per model the median images/s of each layout and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ddc_env.arch import build
from ddc_env.models import get_model
from ddc_env.train import Precision, compute_signature

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def throughput(net: torch.nn.Module, x: torch.Tensor, precision: Precision, train: bool) -> float:
    """Images per second of one forward (+ backward when ``train``) pass."""
    net.train(train)
    start = time.perf_counter()
    with precision.autocast(torch.device("cpu")), torch.set_grad_enabled(train):
        out = net(x)
        if train:
            out.float().sum().backward()
    return x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "vgg16", "mobilenet_v2"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = Precision.for_device(torch.device("cpu"))
    print(f"machine: {compute_signature('cpu')}, {args.threads} threads, batch {args.batch}")
    print("| model | pass | contiguous img/s | channels_last img/s | channels_last / contiguous |")
    print("|---|---|---|---|---|")
    for name in args.models:
        net = build(get_model(name))
        x = torch.randn(args.batch, 3, 32, 32)
        for train in (True, False):
            rates: dict[str, list[float]] = {k: [] for k in LAYOUTS}
            for _ in range(args.rounds + 1):  # the first round warms both up and is dropped
                for layout, fmt in LAYOUTS.items():
                    net = net.to(memory_format=fmt)
                    rates[layout].append(throughput(net, x.contiguous(memory_format=fmt), precision, train))
            med = {k: statistics.median(v[1:]) for k, v in rates.items()}
            print(f"| {name} | {'train' if train else 'inference'} | {med['contiguous']:.1f} | "
                  f"{med['channels_last']:.1f} | {med['channels_last'] / med['contiguous']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
