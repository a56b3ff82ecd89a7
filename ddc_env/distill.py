"""Knowledge distillation of students at a fidelity: the toolkit every live scorer and baseline uses.

Speed is the product: student training dominates every search. The teacher's logits are computed once per
training image and augmentation view, then reused by every student; images stay in memory on the device as
uint8; training runs under bf16 autocast + channels_last where the device supports them; the loss is only
synchronised to the host every few dozen steps.

Example::

    distiller = Distiller(task, make_fidelity("fast"))
    student = distiller.init_student(task.student_spec({"conv1": 0.5}))   # inherit + BatchNorm recalibration
    distiller.distill(student)
    distiller.accuracy(student)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .arch import NetSpec, build, inherit, recalibrate_batchnorm, stale_batchnorms
from .data import augment, batch_indices, flips, normalize, stratified_cap
from .paths import atomic_writer, ddc_home
from .task import Task
from .train import (AMP_MODES, OPTIMIZERS, SCHEDULES, LoopResult, OptimConfig, Precision, chunks,
                    compute_signature, make_optimizer, predict, resolve_device, train_loop)
from .validate import check_bool, check_choice, check_int, check_names, check_number

__all__ = ["AMP_MODES", "FIDELITIES", "LOSSES", "OPTIMIZERS", "SCHEDULES", "Distiller", "Fidelity",
           "distillation_loss", "make_fidelity"]

LOSSES = ("hinton", "l2_logits", "hard")


@dataclass(frozen=True)
class Fidelity:
    """How hard a student is trained and how precisely it is measured.

    ``train_samples`` / ``val_samples`` cap the training and validation splits (class-stratified, None =
    all); ``views`` augmented copies of the training images each get their teacher logits cached once,
    epoch ``e`` trains on view ``e % views``; ``recalibrate_bn`` training images re-estimate the statistics of
    the BatchNorm layers inheritance changed (0 = off); ``inherit=False`` trains students from random init.
    Every field is checked at construction.
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
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"fidelity name must be a non-empty string, got {self.name!r}")
        for name, minimum in (("epochs", 0), ("batch_size", 1), ("views", 1), ("recalibrate_bn", 0), ("seed", 0)):
            check_int(getattr(self, name), f"fidelity {name}", minimum=minimum)
        for name in ("train_samples", "val_samples"):
            check_int(getattr(self, name), f"fidelity {name}", minimum=1, optional=True)
        check_choice(self.loss, "fidelity loss", LOSSES)
        check_choice(self.optimizer, "fidelity optimizer", OPTIMIZERS)
        check_choice(self.schedule, "fidelity schedule", SCHEDULES)
        check_choice(self.amp, "fidelity amp", AMP_MODES)
        check_number(self.temperature, "fidelity temperature", minimum=0.0, exclusive_minimum=True)
        check_number(self.alpha, "fidelity alpha", minimum=0.0, maximum=1.0)
        check_number(self.lr, "fidelity lr", minimum=0.0, exclusive_minimum=True)
        check_number(self.weight_decay, "fidelity weight_decay", minimum=0.0)
        check_bool(self.augment, "fidelity augment")
        check_bool(self.inherit, "fidelity inherit")

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
    check_names(overrides, sorted({f.name for f in dataclasses.fields(Fidelity)} - {"name"}), "fidelity field(s)")
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


class Distiller:
    """The distillation toolkit of one live task at one fidelity: the teacher on the training device, the
    fidelity's training and validation images, the teacher's cached logits per augmentation view, and the steps
    every student goes through (inherit + BatchNorm recalibration, KD training, validation accuracy).

    Every step that draws random numbers uses its own generator seeded by the fidelity, so a student is trained
    the same way in every process and the caller's global torch RNG (an agent's policy sampling) is untouched.
    """

    def __init__(self, task: Task, fidelity: Fidelity, *, device: str | torch.device | None = "auto") -> None:
        teacher, data = task.require_live("student training")
        self.task, self.fidelity, self.data = task, fidelity, data
        self.device = resolve_device(device)
        self.precision = Precision.for_device(self.device, fidelity.amp)
        self.teacher = self.precision.prepare(teacher.net.to(self.device).eval())
        self.class_indices = task.class_indices
        train_pos, val_pos = _cap(data.train.y, fidelity.train_samples), _cap(data.val.y, fidelity.val_samples)
        self.train_x = data.train.x[train_pos].to(self.device)
        self.train_y = data.train.y[train_pos].to(self.device)
        self.val_x = data.val.x[val_pos].to(self.device)
        self.val_y = data.val.y[val_pos].to(self.device)
        self.input_shape = task.input_shape
        self._views: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- inputs and predictions --------------------------------------------------------------------------
    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the normalised float inputs the teacher was trained on."""
        return normalize(x, self.data.mean, self.data.std)

    def batches(self, x: torch.Tensor, batch_size: int = 512) -> Iterator[torch.Tensor]:
        """Normalised batches of ``x``."""
        for s in chunks(len(x), batch_size):
            yield self.normalized(x[s])

    def train_images(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` training images the fidelity trains on, normalised (for calibration, ranking)."""
        return self.normalized(self.train_x if n is None else self.train_x[:n])

    def logits(self, net: nn.Module, x: torch.Tensor, teacher: bool = False) -> torch.Tensor:
        """Float32 logits of ``net`` over uint8 images ``x``; ``teacher=True`` narrows a whole-dataset teacher's
        logits to the task's class subset."""
        logits = predict(net, self.batches(x), device=self.device, precision=self.precision)
        return logits[:, list(self.class_indices)] if (teacher and self.class_indices is not None) else logits

    def accuracy(self, net: nn.Module, teacher: bool = False) -> float:
        """Validation accuracy of ``net`` on the fidelity's validation images (the reward's accuracy)."""
        return (self.logits(net, self.val_x, teacher).argmax(1) == self.val_y).float().mean().item()

    def teacher_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(views, N, C, H, W) uint8 augmented training images and (views, N, K) teacher logits, made once per
        process; the logits are kept on disk too (:meth:`_cached_teacher_logits`)."""
        if self._views is None:
            f = self.fidelity
            flip = flips(self.data.config.dataset)
            pad = max(1, self.data.image_size[0] // 8)
            images = []
            for v in range(f.views):
                gen = torch.Generator(self.device).manual_seed(f.seed * 7919 + v)
                images.append(augment(self.train_x, gen, pad=pad, flip=flip) if f.augment else self.train_x)
            stacked = torch.stack(images)
            self._views = stacked, self._cached_teacher_logits(stacked)
        return self._views

    def _cached_teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits of every view in ``images``, read from ``$DDC_HOME/teacher_logits/<key>.pt`` when a
        process computed them before (the teacher's pass over every view is minutes of a large teacher's KD on a
        CPU). The key is what the logits depend on: the task's teacher and data keys, the class subset, the fidelity
        fields that make the views, and the machine, precision and thread count (equal keys give bit-identical
        logits); an unreadable or mismatched file is computed again and replaced."""
        f = self.fidelity
        key = json.dumps([self.task.teacher_id, self.task.data_key, self.class_indices and list(self.class_indices),
                          f.train_samples, f.views, f.augment, f.seed, compute_signature(self.device),
                          self.precision.name, torch.get_num_threads()], default=str)
        digest = hashlib.sha256(key.encode())
        path = ddc_home() / "teacher_logits" / f"{digest.hexdigest()[:24]}.pt"
        try:
            cached = torch.load(path, map_location=self.device, weights_only=True)
            if isinstance(cached, torch.Tensor) and cached.shape[:2] == images.shape[:2] and \
                    cached.dtype == torch.float32:
                return cached
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError):
            pass  # missing, truncated or corrupt: computed again below
        logits = torch.stack([self.logits(self.teacher, x, teacher=True) for x in images])
        with atomic_writer(path) as out:
            torch.save(logits.cpu(), out)
        return logits

    # -- students ------------------------------------------------------------------------------------------
    def init_student(self, spec: NetSpec) -> nn.Module:
        """The untrained student of ``spec`` on the training device: inherited from the teacher (or randomly
        initialised, per the fidelity) with the BatchNorm statistics that changed re-estimated."""
        f = self.fidelity
        with torch.random.fork_rng(devices=[]):  # module construction draws from the global RNG: isolate it
            torch.manual_seed(f.seed)
            student = (inherit(self.teacher, self.task.teacher_spec, spec, class_indices=self.class_indices)
                       if f.inherit else build(spec))
        student = self.precision.prepare(student.to(self.device))
        if f.recalibrate_bn:
            self.recalibrate(student, spec if f.inherit else None)
        return student

    def recalibrate(self, net: nn.Module, spec: NetSpec | None = None) -> None:
        """Re-estimate BatchNorm statistics on the fidelity's first ``recalibrate_bn`` (unaugmented) training
        images: with ``spec`` (an inherited student's), only the layers inheritance changed; else all."""
        f = self.fidelity
        only = stale_batchnorms(net, self.task.teacher_spec, spec) if spec is not None else None
        with self.precision.autocast(self.device):
            recalibrate_batchnorm(net, self.batches(self.train_x[:f.recalibrate_bn], f.batch_size), only=only)

    def train_student(self, spec: NetSpec) -> tuple[nn.Module, LoopResult | None]:
        """The student of ``spec`` initialised and distilled at the fidelity, in eval mode, with its training
        result (None at zero epochs)."""
        student = self.init_student(spec)
        result = self.distill(student)
        return student.eval(), result

    def distill(self, student: nn.Module, epochs: int | None = None, lr: float | None = None,
                teacher_logits: torch.Tensor | None = None) -> LoopResult | None:
        """KD-train ``student`` in place on the cached teacher views for ``epochs`` (default: the fidelity's)
        at peak learning rate ``lr`` (default: the fidelity's); None when there are no epochs.
        ``teacher_logits`` ((views, N, K), on the same views) replaces the teacher's, e.g. an assistant's."""
        f = self.fidelity
        epochs = f.epochs if epochs is None else check_int(epochs, "epochs")
        if epochs == 0:
            return None
        lr = f.lr if lr is None else check_number(lr, "lr", minimum=0.0, exclusive_minimum=True)
        images, cached = self.teacher_views()
        if teacher_logits is None:
            teacher_logits = cached
        elif teacher_logits.shape != cached.shape:
            raise ValueError(f"teacher_logits must have the cached logits' shape {tuple(cached.shape)}, "
                             f"got {tuple(teacher_logits.shape)}")
        n = len(self.train_y)
        steps = epochs * -(-n // f.batch_size)
        opt, sched = make_optimizer(student, OptimConfig(f.optimizer, lr, weight_decay=f.weight_decay,
                                                         schedule=f.schedule), steps)
        gen = torch.Generator(self.device).manual_seed(f.seed)

        def epoch(e: int) -> Iterator[tuple[torch.Tensor, ...]]:
            view = e % f.views
            for idx in batch_indices(n, f.batch_size, shuffle=True, generator=gen, device=self.device):
                yield self.normalized(images[view, idx]), self.train_y[idx], teacher_logits[view, idx]

        return train_loop(student, (epoch(e) for e in range(epochs)), distillation_loss(f), opt, sched,
                          device=self.device, precision=self.precision)
