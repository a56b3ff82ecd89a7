"""The live scorer: build the student from the teacher's weights, recalibrate BatchNorm, distil at a fidelity,
measure validation accuracy, size and time."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import torch
from torch import nn

from ..arch import NetSpec
from ..distill import Distiller, Fidelity, make_fidelity
from ..latency import LatencyModel, LatencyProtocol, measure_module, measure_paired, timing_copy
from ..metrics import count_flops, count_params, serialized_size
from ..task import Task, TaskConfig, TaskError, load_task
from ..train import torch_threads
from ..validate import check_choice, check_int
from .base import Scorer, make_record

__all__ = ["LATENCY_MODES", "LiveScorer"]

LATENCY_MODES = ("model", "measured", "flops")


class LiveScorer(Scorer):
    """Trains and measures every student it is given (no cache: wrap it in a
    :class:`~ddc_env.scoring.cached.CachedScorer`).

    ``latency`` is what the records' time is: ``"model"`` (default) the cached per-unit latency table of
    :class:`~ddc_env.latency.LatencyModel`, the same in every process; ``"measured"`` student and teacher timed
    directly in interleaved rounds (medians and spreads kept in the record); ``"flops"`` no time (rewards use the
    FLOP ratio). ``latency_protocol`` fixes device, threads and batch size of the timing. ``threads``: the torch
    intra-op threads students train with (None: leave torch's setting); on a CPU the result of a training depends
    on it slightly, and is bit-identical across processes for the same value. One evaluation runs at a time per
    scorer (they share the device and the cached teacher views).

    ``load``: the config of a light ``task`` (one :func:`~ddc_env.task.describe_task` made without data or weights):
    the teacher and the data load on the first use that needs them (:meth:`prepare`), so an env is cheap to make.
    """

    def __init__(self, task: Task, fidelity: str | dict[str, Any] | Fidelity = "fast", *, latency: str = "model",
                 latency_protocol: LatencyProtocol | None = None, device: str | torch.device | None = "auto",
                 latency_model: LatencyModel | None = None, threads: int | None = None,
                 load: TaskConfig | None = None) -> None:
        self.task = task
        self.threads = check_int(threads, "threads", minimum=1, optional=True)
        self.latency = check_choice(latency, "latency", LATENCY_MODES)
        self.protocol = latency_protocol or LatencyProtocol()
        self._latency_model = latency_model or (LatencyModel(self.protocol) if latency == "model" else None)
        self._fidelity, self._device = make_fidelity(fidelity), device
        self.fidelity = self._fidelity.name
        self._load = None if task.live else load
        if self._load is None:
            task.require_live("a live scorer")
        self._distiller: Distiller | None = None
        self._teacher_record: dict[str, Any] | None = None
        self._timing_teacher: nn.Module | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        if self.latency == "model":
            time_key: dict[str, Any] = {"latency": "model", "table": self._latency_model.key()}
        elif self.latency == "measured":
            p = self.protocol
            time_key = {"latency": "measured", "device": p.device, "threads": p.threads, "batch": p.batch_size}
        else:
            time_key = {"latency": "flops"}
        return f"{self._fidelity.hash()}:{json.dumps(time_key, sort_keys=True)}"

    def prepare(self) -> None:
        """Load the teacher and the data of a light task (checked to be the same task), and the KD toolkit."""
        if self._distiller is not None:
            return
        if self._load is not None:
            live = load_task(self._load)
            if (live.teacher_spec, live.class_indices) != (self.task.teacher_spec, self.task.class_indices):
                raise TaskError(f"the teacher and data loaded for {self.task.name!r} are not the task its env was made "
                                f"with (another teacher architecture or class subset)")
            self.task, self._load = live, None
        self._distiller = Distiller(self.task, self._fidelity, device=self._device)

    @property
    def distiller(self) -> Distiller:
        """The KD toolkit (teacher, data split, cached teacher views), made on first use."""
        self.prepare()
        return self._distiller

    def latency_model(self) -> LatencyModel | None:
        return self._latency_model

    @property
    def time_term(self) -> str:
        return "flops" if self.latency == "flops" else "latency"

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "fidelity_fields": dataclasses.asdict(self._fidelity),
               "latency": self.latency}
        if self._latency_model is not None:
            out["latency_model"] = self._latency_model.describe()
        elif self.latency == "measured":
            out["latency_protocol"] = dataclasses.asdict(self.protocol)
        return out

    # -- the teacher -----------------------------------------------------------------------------------------
    def teacher_record(self) -> dict[str, Any]:
        if self._teacher_record is None:
            d = self.distiller
            spec = self.task.teacher_spec
            latency = None
            if self.latency == "model":
                latency = self._latency_model.predict_ms(spec)
            elif self.latency == "measured":
                latency = measure_module(self._teacher_for_timing(), self.task.input_shape, self.protocol)[0]
            self._teacher_record = {"val_acc": d.accuracy(d.teacher, teacher=True), "params": spec.params,
                                    "flops": spec.flops, "size_bytes": serialized_size(d.teacher),
                                    "latency_ms": latency}
        return self._teacher_record

    def _teacher_for_timing(self) -> nn.Module:
        if self._timing_teacher is None:
            self._timing_teacher = timing_copy(self.distiller.teacher, self.protocol.device)
        return self._timing_teacher

    # -- students --------------------------------------------------------------------------------------------
    def evaluate(self, spec: NetSpec) -> dict[str, Any]:
        with self._lock, torch_threads(self.threads):
            start = time.perf_counter()
            student, result = self.distiller.train_student(spec)
            # every key has one type whatever happens (vector envs batch infos by key): a diverged student is still
            # measured, its accuracy counts as 0 and its loss is left out
            extra = {"train_seconds": result.seconds if result else 0.0,
                     "train_images_per_second": result.images_per_second if result else 0.0}
            if result is not None and result.diverged:
                record = self.measure(student, spec=spec, accuracy=0.0, status="diverged",
                                      reason=f"training loss became non-finite after {result.steps} steps", **extra)
            else:
                record = self.measure(student, spec=spec, final_loss=result.last_loss if result else 0.0, **extra)
            record["eval_seconds"] = time.perf_counter() - start
        return record

    def student_weights(self, spec: NetSpec) -> dict[str, torch.Tensor]:
        """The weights (CPU tensors) of ``spec``'s student trained exactly as :meth:`evaluate` trains it."""
        with self._lock, torch_threads(self.threads):
            student, _ = self.distiller.train_student(spec)
        return {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}

    def measure(self, net: nn.Module, *, spec: NetSpec | None = None, accuracy: float | None = None,
                params: int | None = None, flops: int | None = None, size_bytes: int | None = None,
                latency_ms: float | None = None, status: str = "ok", reason: str = "", **extra: Any
                ) -> dict[str, Any]:
        """The record of a trained module ``net`` (the env's format). Values not given are measured: ``spec``
        gives params, FLOPs and the model latency; without a spec the module is counted and, under the latency
        model, timed directly against the teacher and scaled to the model's teacher time (so the ratio is the
        measured one)."""
        shape = (1, *self.task.input_shape)
        student: dict[str, Any] = {
            "val_acc": self.distiller.accuracy(net) if accuracy is None else accuracy,
            "params": params if params is not None else (spec.params if spec else count_params(net)),
            "flops": flops if flops is not None else (spec.flops if spec else count_flops(net, shape)),
            "size_bytes": size_bytes if size_bytes is not None else serialized_size(net),
        }
        teacher = self.teacher_record()
        if latency_ms is not None:
            student["latency_ms"] = latency_ms
        else:
            timing = self._latency(net, spec)
            if "teacher_latency_ms" in timing:  # timed in the same window as the student: the ratio's denominator
                teacher = {**teacher, "latency_ms": timing.pop("teacher_latency_ms")}
            student.update(timing)
        return make_record(teacher, {**student, **extra}, spec, status, reason, fidelity=self.fidelity)

    def _latency(self, net: nn.Module, spec: NetSpec | None) -> dict[str, Any]:
        if self.latency == "flops":
            return {"latency_ms": None}
        if self.latency == "model" and spec is not None:
            return {"latency_ms": self._latency_model.predict_ms(spec)}
        paired = measure_paired(timing_copy(net, self.protocol.device), self._teacher_for_timing(),
                                self.task.input_shape, self.protocol)
        if self.latency == "model":  # a module without a spec (e.g. quantized): the measured ratio, model units
            return {"latency_ms": paired.ratio * self.teacher_record()["latency_ms"]}
        return {"latency_ms": paired.student_ms, "latency_spread_ms": paired.student_spread_ms,
                "teacher_latency_ms": paired.teacher_ms, "teacher_latency_spread_ms": paired.teacher_spread_ms}

