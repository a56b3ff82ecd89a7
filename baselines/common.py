"""Machinery every baseline shares: the task's teacher and data split, the live scorer's distillation toolkit
(KD fine-tuning on the cached teacher views) and measurement (records in the env's format), and where results go.

A baseline is a module with ``run(ctx: Context, **kwargs) -> None`` that compresses ``ctx.teacher_net`` and
calls :meth:`Context.result` for each final model (and :meth:`Context.log` for intermediate ones, e.g. each
pruning step). The caller (``ddc baseline``, :func:`ddc_env.lab.baseline.run_baseline`) gives the context a results
store and a folder for the final models.
"""
from __future__ import annotations

import io
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ddc_env.arch import NetSpec
from ddc_env.distill import distillation_loss
from ddc_env.paths import atomic_write_bytes, atomic_write_text
from ddc_env.progress import bar_disable
from ddc_env.scoring import LiveScorer
from ddc_env.store import ResultsStore, make_key
from ddc_env.task import Task
from ddc_env.train import LoopResult, chunks
from ddc_env.validate import check_choice, check_int


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "model"


@dataclass(frozen=True)
class PruningSchedule:
    """The prune + KD schedule of the pruning baselines (their ``Kwargs`` extend it): ``steps`` steps whose goals
    fall geometrically to ``ratio`` times the teacher's ``target`` cost, channels allotted ``allocation``-wise,
    ``epochs`` of KD after each step (None = the fidelity's) and ``final_epochs`` after the last;
    ``ranking_images``: the training images a gradient criterion averages over. A subclass lists its
    ``ALLOCATIONS`` and ``TARGETS`` and checks ``ratio``."""

    ALLOCATIONS: ClassVar[tuple[str, ...]] = ("global", "per_layer")
    TARGETS: ClassVar[tuple[str, ...]] = ("params", "flops")

    allocation: str = "global"
    target: str = "params"
    ratio: float = 0.25
    steps: int = 4
    epochs: int | None = None
    final_epochs: int = 0
    ranking_images: int = 1024

    def __post_init__(self) -> None:
        check_choice(self.allocation, "allocation", self.ALLOCATIONS)
        check_choice(self.target, "target", self.TARGETS)
        for name, low in (("steps", 1), ("final_epochs", 0), ("ranking_images", 1)):
            check_int(getattr(self, name), name, minimum=low)
        check_int(self.epochs, "epochs", optional=True)


class Context:
    """What a baseline works with: the task, the live scorer at the run's fidelity (``distiller``: teacher,
    validation split, cached teacher views, KD; ``measure``: records as the env writes them), where its records
    go (``store``) and where its final models go (``models_dir``)."""

    def __init__(self, task: Task, scorer: LiveScorer, store: ResultsStore, models_dir: Path, method: str, *,
                 progress: bool = True) -> None:
        self.task, self.scorer, self.store, self.models_dir = task, scorer, store, Path(models_dir)
        self.method, self.progress = method, progress
        self.distiller = scorer.distiller
        self.teacher_net: nn.Module = self.distiller.teacher
        self.teacher_spec: NetSpec = task.teacher_spec
        self.device, self.precision = self.distiller.device, self.distiller.precision
        self.results: list[dict[str, Any]] = []
        self.evaluations = 0
        self._started = time.perf_counter()

    def bar(self, items: Sequence[Any], desc: str) -> Iterable[Any]:
        """``items`` with a progress bar named ``desc`` (none when the run is quiet)."""
        return tqdm(items, desc=f"{self.method} {desc}".strip(), disable=bar_disable(self.progress), leave=False)

    # -- training --------------------------------------------------------------------------------------
    def finetune(self, net: nn.Module, epochs: int | None = None, lr: float | None = None) -> LoopResult | None:
        """KD-train ``net`` in place from the teacher's cached logits (the env's recipe; ``epochs`` and ``lr``
        default to the fidelity's)."""
        return self.distiller.distill(net, epochs=epochs, lr=lr)

    def kd_backward(self, net: nn.Module, n_images: int) -> None:
        """Accumulate into ``net``'s ``.grad`` the KD loss's gradient over the first ``n_images`` of the cached first
        augmentation view, in training mode as fine-tuning sees them (for gradient-based pruning criteria); the
        caller zeroes the gradients afterwards."""
        images, teacher_logits = self.distiller.teacher_views()
        n = min(n_images, images.shape[1])
        labels, loss_fn = self.distiller.train_y, distillation_loss(self.distiller.fidelity)
        was_training = net.training
        net.train()
        try:
            for s in chunks(n, self.distiller.fidelity.batch_size):
                x = self.precision.inputs(self.distiller.normalized(images[0, s]))
                with self.precision.autocast(self.device):
                    out = net(x)
                loss_fn(out, labels[s], teacher_logits[0, s]).backward()
        finally:
            net.train(was_training)

    def train_images(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` training images the fidelity trains on, normalised (for calibration, ranking)."""
        return self.distiller.train_images(n)

    # -- measuring ---------------------------------------------------------------------------------------
    def measure(self, net: nn.Module, **values: Any) -> dict[str, Any]:
        """A record of ``net`` in the env's format (see :meth:`ddc_env.scoring.LiveScorer.measure`)."""
        return self.scorer.measure(net, **values)

    def log(self, label: str, record: dict[str, Any], seconds: float = 0.0) -> dict[str, Any]:
        """Write an (intermediate or final) record to the results store under this baseline's method."""
        self.evaluations += 1
        record = {**record, "label": label, "method": self.method}
        key = make_key(self.task.teacher_id, self.task.data_key, f"{self.method}:{label}", self.scorer.key)
        self.store.put(key, record, teacher=self.task.teacher_id, data=self.task.data_key,
                       spec_hash=record.get("spec_hash", ""), fidelity=self.scorer.key, method=self.method,
                       seconds=seconds)
        return record

    def result(self, label: str, net: nn.Module, record: dict[str, Any], *, spec: NetSpec | None = None,
               torchscript: bool = False, seconds: float | None = None, **extra: Any) -> dict[str, Any]:
        """A final model: logged to the store, saved in ``models_dir`` (spec + state dict, or TorchScript when
        ``torchscript`` or no spec), and listed in :attr:`results` with ``extra`` facts; file names relative to
        ``models_dir``'s parent."""
        seconds = time.perf_counter() - self._started if seconds is None else seconds
        record = self.log(label, record, seconds)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        stem, where = _slug(label), self.models_dir.name
        net = net.eval()
        if spec is not None and not torchscript:
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, buffer)
            atomic_write_bytes(self.models_dir / f"{stem}.pt", buffer.getvalue())
            atomic_write_text(self.models_dir / f"{stem}.json", spec.to_json(indent=1))
            files = {"spec": f"{where}/{stem}.json", "weights": f"{where}/{stem}.pt"}
        else:
            example = torch.zeros(1, *self.task.input_shape)
            with torch.no_grad():
                scripted = torch.jit.trace(net.cpu(), example)
            buffer = io.BytesIO()
            torch.jit.save(scripted, buffer)
            atomic_write_bytes(self.models_dir / f"{stem}.ts", buffer.getvalue())
            files = {"torchscript": f"{where}/{stem}.ts"}
        entry = {"label": label, "method": self.method, "record": record, "model": files,
                 "evaluations": self.evaluations, "wall_seconds": seconds, **extra}
        self.results.append(entry)
        return entry

    def model_file(self, name: str) -> tuple[Path, str]:
        """Where a baseline writes a file of its own beside its final models: (path, name relative to the run)."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        return self.models_dir / name, f"{self.models_dir.name}/{name}"

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self._started


__all__ = ["Context", "PruningSchedule"]
