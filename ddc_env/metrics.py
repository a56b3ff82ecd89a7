"""Cost metrics of a ``torch.nn.Module``: parameters, FLOPs, serialized size and latency."""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import logging
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "CostMetrics",
    "LatencyResult",
    "count_flops",
    "count_params",
    "measure_costs",
    "measure_latency",
    "serialized_size",
]


@dataclass(frozen=True)
class LatencyResult:
    """Forward-pass latency statistics in milliseconds over ``runs`` individually timed passes."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    runs: int
    device: str
    batch_size: int
    num_threads: int


@dataclass(frozen=True)
class CostMetrics:
    """Cost of a model: parameters, FLOPs of one forward pass, state-dict bytes, median latency."""

    params: int
    flops: int
    size_bytes: int
    latency_ms: float | None


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of a batch of ``input_shape``, counted by ``FlopCounterMode``.

    Multiply-accumulates count as 2 FLOPs; element-wise ops (BN, ReLU, bias) are not counted.
    The module runs in eval mode under ``no_grad`` on its own device (CPU for a CPU module);
    its training flags are restored afterwards.
    """
    x = _example_input(module, _check_shape(input_shape), _module_device(module))
    counter = FlopCounterMode(display=False)
    with _eval_mode(module), torch.no_grad(), counter:
        module(x)
    return int(counter.get_total_flops())


def serialized_size(module: nn.Module) -> int:
    """Bytes of ``torch.save(module.state_dict())``."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def measure_latency(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    channels_last: bool = False,
) -> LatencyResult:
    """Time ``repeats`` single forward passes after ``warmup`` passes with ``torch.utils.benchmark``.

    Runs in eval mode under ``inference_mode`` with ``num_threads`` intra-op threads (default:
    the current ``torch.get_num_threads()``). Each pass is one ``Timer.timeit(1)`` call, which
    itself runs two untimed warm-up passes first, so a call costs about ``warmup + 3 * repeats``
    passes. If the module lives on another device than ``device`` or ``channels_last`` is set,
    a copy is measured and ``module`` is left untouched. The module's training flags and torch's
    thread count are restored.
    """
    shape = _check_shape(input_shape)
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    threads = torch.get_num_threads() if num_threads is None else num_threads
    if threads < 1:
        raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
    if channels_last and len(shape) != 4:
        raise ValueError(f"channels_last needs a 4-D input shape (N, C, H, W), got {shape}")
    dev = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    target = module
    if channels_last or _module_device(module) != dev:
        target = copy.deepcopy(module).to(dev, memory_format=memory_format)
    x = _example_input(target, shape, dev).contiguous(memory_format=memory_format)
    benchmark = _torch_benchmark()

    timer = benchmark.Timer(stmt="module(x)", globals={"module": target, "x": x}, num_threads=threads)
    with _eval_mode(target), torch.inference_mode():
        if warmup:
            timer.timeit(warmup)
        times_ms = [timer.timeit(1).times[0] * 1e3 for _ in range(repeats)]
    if len(times_ms) == 1:
        p25 = median = p75 = times_ms[0]
    else:
        p25, median, p75 = statistics.quantiles(times_ms, n=4, method="inclusive")
    return LatencyResult(
        median_ms=median,
        p25_ms=p25,
        p75_ms=p75,
        runs=len(times_ms),
        device=str(dev),
        batch_size=shape[0],
        num_threads=threads,
    )


def measure_costs(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    latency: bool = True,
    **latency_kwargs: object,
) -> CostMetrics:
    """All cost metrics of ``module``; ``latency_kwargs`` go to :func:`measure_latency`."""
    if not latency and latency_kwargs:
        raise ValueError(f"latency options {sorted(latency_kwargs)} given but latency=False")
    latency_ms = measure_latency(module, input_shape, **latency_kwargs).median_ms if latency else None
    return CostMetrics(
        params=count_params(module),
        flops=count_flops(module, input_shape),
        size_bytes=serialized_size(module),
        latency_ms=latency_ms,
    )


def _torch_benchmark():
    """``torch.utils.benchmark``, imported on first use: it pulls in torch's C++ toolchain helpers, which are
    slow to import and, on a CUDA build without a GPU, log a warning about the missing CUDA runtime."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Validate an input shape (batch first) and return it as a tuple of ints."""
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints, got {input_shape!r}")
    return shape


def _module_device(module: nn.Module) -> torch.device:
    """Device of the module's first parameter or buffer (CPU for a stateless module)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _example_input(module: nn.Module, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A fixed pseudo-random input of the module's floating dtype; leaves the global RNG alone."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode; restore every submodule's own training flag on exit."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
