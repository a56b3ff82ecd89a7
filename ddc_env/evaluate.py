"""Student evaluation: build + inherit from the teacher, recalibrate BatchNorm, distil, measure.

Speed is the product: student training dominates every search. The teacher's logits are computed once per
training image and augmentation view, then reused by every student; images stay in memory on the device as
uint8; training runs under bf16 autocast + channels_last where the device supports them; the loss is only
synchronised to the host every few dozen steps. Every finished evaluation is written to the results store
in one transaction, so a repeated student is a cache hit and a crash loses at most the one in flight.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .arch import NetSpec, build, inherit, recalibrate_batchnorm
from .data import DataBundle, augment, batch_indices, flips, normalize, stratified_cap
from .metrics import measure_latency, serialized_size
from .rewards import ratios
from .store import ResultsStore, make_key
from .train import (LoopResult, OptimConfig, Precision, chunks, make_optimizer, predict, resolve_device,
                    train_loop)

LOSSES = ("hinton", "l2_logits", "hard")
LATENCY_MODES = ("measured", "flops")


@dataclass(frozen=True)
class Fidelity:
    """How hard a student is trained and how precisely it is measured.

    ``train_samples`` / ``val_samples`` cap the training and validation splits (class-stratified, None =
    all); ``views`` augmented copies of the training images each get their teacher logits cached once,
    epoch ``e`` trains on view ``e % views``; ``recalibrate_bn`` training images re-estimate BatchNorm
    statistics after inheritance (0 = off); ``inherit=False`` trains students from random init.
    """

    name: str = "custom"
    epochs: int = 1
    train_samples: int | None = 5000
    val_samples: int | None = 2000
    batch_size: int = 128
    loss: str = "hinton"
    temperature: float = 3.0
    alpha: float = 0.9
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    views: int = 1
    augment: bool = True
    recalibrate_bn: int = 2048
    inherit: bool = True
    amp: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("epochs", "recalibrate_bn"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1 or self.views < 1:
            raise ValueError("batch_size and views must be >= 1")
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise ValueError("alpha must be in [0, 1] and temperature > 0")

    def hash(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


FIDELITIES: dict[str, Fidelity] = {
    # seconds on 2 CPU cores: for tests
    "smoke": Fidelity("smoke", epochs=1, train_samples=256, val_samples=256, batch_size=64,
                      recalibrate_bn=256, lr=0.02),
    # inherit + BatchNorm recalibration, no training: the cheapest meaningful signal
    "zero": Fidelity("zero", epochs=0, train_samples=2048, val_samples=2000, recalibrate_bn=2048),
    # under a minute per ResNet-18 student on 2 CPU cores
    "fast": Fidelity("fast", epochs=2, train_samples=10000, val_samples=2000, views=2),
    # GPU-scale defaults
    "standard": Fidelity("standard", epochs=10, train_samples=None, val_samples=None, batch_size=256, lr=0.1,
                         views=5, recalibrate_bn=4096),
    # the papers' KD settings (N2N: 5 epochs, L2 on logits, Adam 5e-4; DDC: 20 epochs, Hinton T=3 alpha=0.9)
    "n2n_paper": Fidelity("n2n_paper", epochs=5, train_samples=None, val_samples=None, loss="l2_logits",
                          optimizer="adam", lr=5e-4, weight_decay=0.0, schedule="constant", views=5),
    "ddc_paper": Fidelity("ddc_paper", epochs=20, train_samples=None, val_samples=None, loss="hinton",
                          temperature=3.0, alpha=0.9, batch_size=256, lr=0.05, schedule="cosine", views=10),
}


def make_fidelity(spec: str | Fidelity | dict[str, Any]) -> Fidelity:
    """A preset by name, a Fidelity as is, or a dict ``{"name": preset, field: override, ...}``."""
    if isinstance(spec, Fidelity):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"fidelity must be a preset name, a dict or a Fidelity; got {spec!r}")
    overrides = dict(spec)
    name = overrides.pop("name", "custom")
    if name not in FIDELITIES and name != "custom":
        raise ValueError(f"unknown fidelity {name!r}; presets: {sorted(FIDELITIES)}")
    allowed = {f.name for f in dataclasses.fields(Fidelity)} - {"name"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown fidelity field(s) {unknown}; allowed: {sorted(allowed)}")
    base = FIDELITIES.get(name, Fidelity())
    return dataclasses.replace(base, name=name if not overrides else f"{name}*", **overrides)


def distillation_loss(fidelity: Fidelity):
    """loss(student_logits, labels, teacher_logits) for the fidelity's loss kind."""
    T, alpha = fidelity.temperature, fidelity.alpha

    def hinton(s: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = s.float()
        kl = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean", log_target=True)
        return alpha * T * T * kl + (1.0 - alpha) * F.cross_entropy(s, y)

    def l2_logits(s: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(s.float(), t)

    def hard(s: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(s.float(), y)

    return {"hinton": hinton, "l2_logits": l2_logits, "hard": hard}[fidelity.loss]


def _cap(y: torch.Tensor, n: int | None) -> torch.Tensor:
    """Positions of a class-stratified subset of at most ``n`` samples (all when None)."""
    if n is None or n >= len(y):
        return torch.arange(len(y))
    return torch.from_numpy(stratified_cap(y.cpu().numpy(), n)).long()


def state_dict_hash(net: nn.Module) -> str:
    """sha256 of a module's tensors, for teachers without a checkpoint hash."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Evaluator:
    """Evaluates student specs of one teacher on one data bundle at one fidelity.

    ``evaluate(spec)`` returns the metrics record (see :mod:`ddc_env.rewards`) and writes it to ``store``.
    Latency is measured on ``latency_device`` (median of repeated forward passes of a batch of
    ``latency_batch_size``) when ``latency="measured"``; with ``latency="flops"`` the record carries no
    measured time and rewards use FLOPs instead, which is deterministic.
    """

    def __init__(self, teacher_net: nn.Module, teacher_spec: NetSpec, data: DataBundle, fidelity: Fidelity, *,
                 teacher_id: str | None = None, device: str | torch.device | None = "auto",
                 latency: str = "measured", latency_batch_size: int = 1, latency_threads: int | None = None,
                 latency_device: str = "cpu", latency_repeats: int = 30,
                 store: ResultsStore | str | None = None, run: str | None = None) -> None:
        if latency not in LATENCY_MODES:
            raise ValueError(f"latency must be one of {LATENCY_MODES}, got {latency!r}")
        if teacher_spec.num_classes != data.num_classes and teacher_spec.num_classes <= max(data.class_indices):
            raise ValueError(f"the teacher has {teacher_spec.num_classes} classes but the data's classes are "
                             f"{list(data.class_indices)}")
        self.device = resolve_device(device)
        self.precision = Precision.for_device(self.device, fidelity.amp)
        self.teacher_spec, self.data, self.fidelity = teacher_spec, data, fidelity
        self.teacher = self.precision.prepare(teacher_net.to(self.device).eval())
        self.teacher_id = teacher_id or state_dict_hash(teacher_net)
        self.subset = teacher_spec.num_classes != data.num_classes
        self.class_indices = tuple(data.class_indices) if self.subset else None
        self.latency, self.latency_batch_size = latency, latency_batch_size
        self.latency_threads, self.latency_device, self.latency_repeats = latency_threads, latency_device, \
            latency_repeats
        self.store = ResultsStore(store) if isinstance(store, str) else store
        self.run = run
        self._memory: dict[str, dict[str, Any]] = {}
        self._teacher_record: dict[str, Any] | None = None
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None

        train_pos, val_pos = _cap(data.train.y, fidelity.train_samples), _cap(data.val.y, fidelity.val_samples)
        self.train_x = data.train.x[train_pos].to(self.device)
        self.train_y = data.train.y[train_pos].to(self.device)
        self.val_x = data.val.x[val_pos].to(self.device)
        self.val_y = data.val.y[val_pos].to(self.device)
        self.input_shape = (data.in_channels, *data.image_size)
        latency_key = {"latency": latency, "batch": latency_batch_size, "threads": latency_threads,
                       "device": latency_device} if latency == "measured" else {"latency": latency}
        self.fidelity_key = f"{fidelity.hash()}:{json.dumps(latency_key, sort_keys=True)}"
        self.data_key = data.fingerprint()

    # -- inputs ----------------------------------------------------------------------------------------
    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.data.mean, self.data.std)

    def _batches(self, x: torch.Tensor, batch_size: int = 512) -> Iterator[torch.Tensor]:
        for s in chunks(len(x), batch_size):
            yield self._normalized(x[s])

    def _logits(self, net: nn.Module, x: torch.Tensor, teacher: bool = False) -> torch.Tensor:
        """Float32 logits over ``x``; the teacher's are narrowed to the data's class subset."""
        logits = predict(net, self._batches(x), device=self.device, precision=self.precision)
        return logits[:, list(self.class_indices)] if (teacher and self.subset) else logits

    def accuracy(self, net: nn.Module, teacher: bool = False) -> float:
        """Validation accuracy of ``net`` on the fidelity's validation images (the reward's accuracy)."""
        return (self._logits(net, self.val_x, teacher).argmax(1) == self.val_y).float().mean().item()

    def teacher_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(views, N, C, H, W) uint8 augmented training images and (views, N, K) teacher logits, made once."""
        if self._views is None:
            f = self.fidelity
            flip = flips(self.data.config.dataset)
            pad = max(1, self.data.image_size[0] // 8)
            images, logits = [], []
            for v in range(f.views):
                gen = torch.Generator(self.device).manual_seed(f.seed * 7919 + v)
                x = augment(self.train_x, gen, pad=pad, flip=flip) if f.augment else self.train_x
                images.append(x)
                logits.append(self._logits(self.teacher, x, teacher=True))
            self._views = torch.stack(images), torch.stack(logits)
        return self._views

    # -- records ---------------------------------------------------------------------------------------
    def latency_ms(self, net: nn.Module) -> float | None:
        """Median measured forward time of ``net`` in milliseconds (None with ``latency="flops"``)."""
        if self.latency != "measured":
            return None
        result = measure_latency(net, (self.latency_batch_size, *self.input_shape), device=self.latency_device,
                                 num_threads=self.latency_threads, repeats=self.latency_repeats)
        return result.median_ms

    @property
    def teacher_record(self) -> dict[str, Any]:
        """The teacher's val accuracy (on this class subset), params, FLOPs, size and latency."""
        if self._teacher_record is None:
            self._teacher_record = {
                "val_acc": self.accuracy(self.teacher, teacher=True),
                "params": self.teacher_spec.params,
                "flops": self.teacher_spec.flops,
                "size_bytes": serialized_size(self.teacher),
                "latency_ms": self.latency_ms(self.teacher),
            }
        return self._teacher_record

    def _record(self, student: dict[str, Any], spec: NetSpec | None, status: str, reason: str = "") -> dict:
        t = self.teacher_record
        record = {"status": status, "reason": reason, "fidelity": self.fidelity.name,
                  **{f"teacher_{k}": v for k, v in t.items()}, **student}
        if spec is not None:
            record.update(spec=spec.to_dict(), spec_hash=spec.hash())
        if status == "ok":
            record.update(ratios(record))
        return record

    def invalid_record(self, reason: str) -> dict[str, Any]:
        """The record of an action that gives no valid student (rewarded as a failure)."""
        return {**self._record({"val_acc": 0.0}, None, "invalid", reason), "cache_hit": False}

    def key(self, spec: NetSpec) -> str:
        return make_key(self.teacher_id, self.data_key, spec.hash(), self.fidelity_key)

    def evaluate(self, spec: NetSpec) -> dict[str, Any]:
        """Train and measure ``spec`` (or return its cached record); ``record["cache_hit"]`` says which."""
        key = self.key(spec)
        cached = self._memory.get(key) or (self.store.get(key) if self.store is not None else None)
        if cached is not None:
            self._memory[key] = cached
            return {**cached, "cache_hit": True}
        start = time.perf_counter()
        record = self._train_and_measure(spec)
        record["eval_seconds"] = time.perf_counter() - start
        self._memory[key] = record
        if self.store is not None:
            self.store.put(key, record, teacher=self.teacher_id, data=self.data_key, spec_hash=spec.hash(),
                           fidelity=self.fidelity_key, run=self.run, method="env", seconds=record["eval_seconds"])
        return {**record, "cache_hit": False}

    def train_student(self, spec: NetSpec) -> tuple[nn.Module, LoopResult | None]:
        """The student of ``spec`` as :meth:`evaluate` trains it (same seed, same weights), with its training
        result (None at zero epochs); the module is in eval mode on the evaluator's device."""
        student = self.init_student(spec)
        result = self.distill(student)
        return student.eval(), result

    def init_student(self, spec: NetSpec) -> nn.Module:
        """The untrained student of ``spec`` on the evaluator's device: inherited from the teacher (or randomly
        initialised, per the fidelity) with recalibrated BatchNorm statistics; seeded by the fidelity."""
        f = self.fidelity
        torch.manual_seed(f.seed)
        if f.inherit:
            student = inherit(self.teacher, self.teacher_spec, spec, class_indices=self.class_indices)
        else:
            student = build(spec)
        student = self.precision.prepare(student.to(self.device))
        if f.recalibrate_bn:
            self.recalibrate(student)
        return student

    def recalibrate(self, net: nn.Module) -> None:
        """Re-estimate ``net``'s BatchNorm statistics on the fidelity's first ``recalibrate_bn`` training images."""
        f = self.fidelity
        with self.precision.autocast(self.device):
            recalibrate_batchnorm(net, self._batches(self.train_x[:f.recalibrate_bn], f.batch_size))

    def _train_and_measure(self, spec: NetSpec) -> dict[str, Any]:
        student, result = self.train_student(spec)
        # every key has one type whatever happens (vector envs batch infos by key): a diverged student is
        # still measured, its accuracy counts as 0 and its loss is left out
        student_info = {"params": spec.params, "flops": spec.flops, "size_bytes": serialized_size(student),
                        "latency_ms": self.latency_ms(student),
                        "train_seconds": result.seconds if result else 0.0,
                        "train_images_per_second": result.images_per_second if result else 0.0}
        if result is not None and result.diverged:
            reason = f"training loss became non-finite after {result.steps} steps"
            return self._record({**student_info, "val_acc": 0.0}, spec, "diverged", reason)
        student_info.update(val_acc=self.accuracy(student), final_loss=result.last_loss if result else 0.0)
        return self._record(student_info, spec, "ok")

    def distill(self, student: nn.Module, epochs: int | None = None, lr: float | None = None,
                teacher_logits: torch.Tensor | None = None) -> LoopResult | None:
        """KD-train ``student`` in place on the cached teacher views for ``epochs`` (default: the fidelity's)
        at peak learning rate ``lr`` (default: the fidelity's); None when there are no epochs.
        ``teacher_logits`` ((views, N, K), on the same views) replaces the teacher's, e.g. an assistant's."""
        f = self.fidelity
        epochs = f.epochs if epochs is None else epochs
        if epochs == 0:
            return None
        images, cached = self.teacher_views()
        if teacher_logits is None:
            teacher_logits = cached
        elif teacher_logits.shape != cached.shape:
            raise ValueError(f"teacher_logits must have the cached logits' shape {tuple(cached.shape)}, "
                             f"got {tuple(teacher_logits.shape)}")
        n = len(self.train_y)
        steps = epochs * -(-n // f.batch_size)
        opt, sched = make_optimizer(student, OptimConfig(f.optimizer, f.lr if lr is None else lr,
                                                         weight_decay=f.weight_decay, schedule=f.schedule), steps)
        gen = torch.Generator(self.device).manual_seed(f.seed)

        def epoch(e: int) -> Iterator[tuple[torch.Tensor, ...]]:
            view = e % f.views
            for idx in batch_indices(n, f.batch_size, shuffle=True, generator=gen, device=self.device):
                yield self._normalized(images[view, idx]), self.train_y[idx], teacher_logits[view, idx]

        return train_loop(student, (epoch(e) for e in range(epochs)), distillation_loss(f), opt, sched,
                          device=self.device, precision=self.precision)
