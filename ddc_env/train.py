"""Shared training machinery: device precision policy, optimisers and schedules, the training loop,
and batched inference. Teacher training and student distillation both run through :func:`train_loop`.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from .validate import check_bool, check_choice, check_device, check_number

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
AMP_MODES = ("auto", "bf16", "fp16", "off")
Batch = tuple[torch.Tensor, ...]  # (inputs, *targets)
LossFn = Callable[..., torch.Tensor]  # loss_fn(logits, *targets) -> scalar


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU; anything else is checked and returned."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(check_device(device) if isinstance(device, str) else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast on ``device`` (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                    or getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    return False


def device_signature(device: str = "cpu") -> str:
    """What a latency measured on ``device`` depends on besides the network: the processor (or GPU) model, its
    instruction set as torch uses it, and the torch version."""
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = _cpu_model()
        name += f" [{torch.backends.cpu.get_cpu_capability()}]"
    return f"{name} | torch {torch.__version__.split('+')[0]}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = fp32) and memory format for a device."""

    amp_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def for_device(cls, device: torch.device, amp: str = "auto", channels_last: str | bool = "auto") -> "Precision":
        """``amp``: "auto" (bf16 where fast), "bf16", "fp16" (CUDA only) or "off". ``channels_last`` "auto": on a CPU
        always (oneDNN's fp32 kernels are faster in it too, depthwise convs several times: ``bench/memory_format.py``),
        on a GPU with mixed precision."""
        check_choice(amp, "amp", AMP_MODES)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}.get(amp)
        if amp == "auto":
            dtype = torch.bfloat16 if bf16_supported(device) else None
        if dtype is torch.float16 and device.type != "cuda":
            raise ValueError("amp='fp16' needs a CUDA device; use 'bf16' or 'off' on CPU")
        cl = (dtype is not None or device.type == "cpu") if channels_last == "auto" else bool(channels_last)
        return cls(dtype, cl)

    @property
    def name(self) -> str:
        """"bf16", "fp16" or "fp32": the dtype training computes in."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype, "fp32")

    def autocast(self, device: torch.device):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self.amp_dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def compute_signature(device: str | torch.device = "cpu", amp: str = "auto") -> dict[str, str]:
    """What a trained student's exact numbers depend on besides its seed, data and thread count: the device signature
    (processor model, instruction set as torch uses it, torch version) and the precision training runs in there.
    Records made under equal signatures are bit-identical; under different ones they agree within seed noise."""
    dev = resolve_device(device)
    return {"device_signature": device_signature(str(dev)), "precision": Precision.for_device(dev, amp).name}


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (``lr`` is the peak for onecycle)."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"

    def __post_init__(self) -> None:
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_number(self.lr, "lr", minimum=0.0, exclusive_minimum=True)
        check_number(self.momentum, "momentum", minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_bool(self.nesterov, "nesterov")
        check_number(self.weight_decay, "weight_decay", minimum=0.0)
        check_choice(self.schedule, "schedule", SCHEDULES)


def make_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Optimiser (sgd | adam | adamw) and per-step schedule (onecycle | cosine | constant; onecycle runs
    constant when there are fewer than 4 steps)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                     nesterov=cfg.nesterov and cfg.momentum > 0,
                                                     weight_decay=cfg.weight_decay)
    else:  # adam or adamw: OptimConfig checked the name
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        opt = cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = max(1, total_steps)
    if cfg.schedule == "onecycle" and total_steps >= 4:  # warm-up needs at least two steps
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=max(0.25, 2.5 / total_steps))
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:  # constant, or onecycle with too few steps to warm up
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


@dataclass
class LoopResult:
    """What a training loop did: steps, images, seconds, mean loss of the last epoch, divergence."""

    steps: int
    images: int
    seconds: float
    last_loss: float
    diverged: bool = False

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def train_loop(model: nn.Module, epochs: Iterable[Iterable[Batch]], loss_fn: LossFn,
               opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, *,
               device: torch.device, precision: Precision, check_every: int = 25,
               progress: Callable[[int], None] | None = None) -> LoopResult:
    """Train ``model`` over ``epochs`` (an iterable of per-epoch batch iterables of (x, *targets) already
    on ``device``). The loss stays on the device; it is checked for NaN/inf every ``check_every`` steps
    (one host sync) and at each epoch end, and training stops at the first non-finite value."""
    model.train()
    steps = images = 0
    last_loss, start = math.nan, time.perf_counter()
    for batches in epochs:
        total = torch.zeros((), device=device)
        n = 0
        for x, *targets in batches:
            with precision.autocast(device):
                loss = loss_fn(model(precision.inputs(x)), *targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().float()
            steps, n, images = steps + 1, n + 1, images + x.shape[0]
            if progress is not None:
                progress(x.shape[0])
            if steps % check_every == 0 and not torch.isfinite(total):
                return LoopResult(steps, images, time.perf_counter() - start, math.nan, diverged=True)
        last_loss = (total / max(n, 1)).item()
        if not math.isfinite(last_loss):
            return LoopResult(steps, images, time.perf_counter() - start, math.nan, diverged=True)
    return LoopResult(steps, images, time.perf_counter() - start, last_loss)


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[torch.Tensor], *, device: torch.device,
            precision: Precision) -> torch.Tensor:
    """Float32 logits of ``model`` over normalised input batches, concatenated (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    outs = []
    for x in batches:
        with precision.autocast(device):
            outs.append(model(precision.inputs(x.to(device))).float())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering range(n)."""
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: as they are); the count is restored after."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
