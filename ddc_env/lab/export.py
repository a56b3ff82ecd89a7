"""Export a run's model to TorchScript or ONNX, checked against the eager model.

What is exported: a search run's best student (``best_student.json`` + ``.pt``), a baseline run's final model
(``label``, default its first), or any student a search evaluated (``spec_hash``, a unique prefix is enough),
which is trained again exactly as the env's live scorer trained it. Export runs on the CPU in fp32 with contiguous
memory. The exported model takes float32 images in [0, 1] (N x C x H x W) and normalises them itself with the
data's mean and std (a first layer of the graph), so a deployment feeds it pixels / 255; the file also says so in
its metadata (ONNX ``metadata_props``, the TorchScript extra file ``ddc_env.json``: input, ``normalize_mean``,
``normalize_std``, ``class_names``). It is reloaded and its outputs compared with the torch model's on a batch of the
run's validation images (random images of the model's shape when the data is not available): TorchScript within
1e-4, ONNX (onnxruntime) within atol 1e-4 / rtol 1e-3. ONNX files have a dynamic batch axis (input ``input``,
output ``logits``); they need the optional extra ``pip install 'ddc-env[onnx]'`` (onnx, onnxruntime).

Example::

    ddc export runs/lenet5-reinforce --format onnx --out lenet5_student.onnx
    ddc export runs/lenet5-uniform --label "uniform 0.5"
    result = export_model("runs/lenet5-reinforce", fmt="torchscript", spec_hash="3f2a9c")
"""
from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__, registration
from ..arch import NetSpec
from ..data import DataBundle, load_data, normalize
from ..models.checkpoints import CheckpointError, read_sidecar
from ..paths import atomic_write_bytes
from .report import FinalModel, Run, final_models, load_live, load_model, quiet_jit, read_run

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".ts", "onnx": ".onnx"}
VERIFY_BATCH = 64  # validation images the exported model is checked on
TRACE_BATCH = 2  # the example batch of tracing: not the verification batch, so a fixed batch size shows up
ONNX_ATOL, ONNX_RTOL, TORCHSCRIPT_ATOL = 1e-4, 1e-3, 1e-4


class ExportError(ValueError):
    """The model cannot be selected, exported or verified; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    """The exported file, what it holds, and the largest output difference from the torch model."""

    path: Path
    what: str
    format: str
    max_abs_diff: float
    inputs: str


def _check_choice(run: Run, spec_hash: str | None, label: str | None) -> None:
    if spec_hash is not None and label is not None:
        raise ExportError("pass --spec or --label, not both")
    if run.kind == "search" and label is not None:
        raise ExportError(f"--label picks a baseline's final model, but {run.path} is a search run (its best "
                          f"student is the default; --spec HASH picks another evaluated student)")
    if run.kind == "baseline" and spec_hash is not None:
        labels = [m.record.get("label") for m in final_models(run)]
        raise ExportError(f"--spec picks a student a search evaluated, but {run.path} is a baseline run: pick one "
                          f"of its final models with --label ({', '.join(map(repr, labels))})")


def _saved_model(run: Run, label: str | None) -> tuple[FinalModel, str]:
    """The final model of a run (a search's best student, a baseline's result by label) and its name."""
    models = [m for m in final_models(run) if m.files]
    if run.kind == "search":
        if not models:
            raise ExportError(f"the search {run.path} found no valid student: nothing to export")
        return models[0], "best_student"
    if not models:
        raise ExportError(f"the baseline run {run.path} has no saved final model")
    if label is None:
        return models[0], models[0].record["label"]
    for m in models:
        if m.record.get("label") == label:
            return m, label
    raise ExportError(f"no final model labelled {label!r} in {run.path}; its labels: "
                      f"{', '.join(repr(m.record.get('label')) for m in models)}")


def _evaluated_spec(run: Run, spec_hash: str) -> NetSpec:
    """The spec of the student with ``spec_hash`` (or a unique prefix of it) among the search's evaluations."""
    specs = {r["spec_hash"]: r["record"]["spec"] for r in run.store_rows()
             if r["record"].get("status") == "ok" and r["record"].get("spec") and r["spec_hash"]}
    matches = sorted(h for h in specs if h.startswith(spec_hash.lower()))
    if len(matches) != 1:
        best = (run.summary.get("best_student") or {}).get("spec_hash")
        why = "matches several students" if matches else "matches no valid student"
        raise ExportError(f"--spec {spec_hash!r} {why} of {run.path} ({len(specs)} evaluated"
                          + (f", the best: {best}" if best else "") + ")")
    return NetSpec.from_dict(specs[matches[0]])


@dataclass(frozen=True)
class _Inputs:
    """What the exported model takes: a check batch of float images in [0, 1] and the normalisation it applies."""

    x: torch.Tensor
    description: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None


def _inputs(run: Run, data: DataBundle | None, shape: tuple[int, ...] | None) -> _Inputs:
    """A batch of the run's validation images with the data's mean and std; without the data, random images and
    the mean and std its teacher's sidecar recorded."""
    try:
        if data is None:
            kwargs = {k: v for k, v in run.config.get("env_kwargs", {}).items() if k not in ("store", "run")}
            data = load_data(registration.env_config(run.config["env_id"], kwargs).task_config().data_config())
    except (ValueError, OSError, AttributeError) as e:
        if shape is None:
            raise ExportError(f"the run's data is not available ({e}), and a TorchScript model does not say its "
                              f"input shape: cannot check the export") from None
        teacher = (run.summary.get("teacher") or {}).get("path")
        try:
            meta = read_sidecar(teacher)
            mean, std = tuple(meta["normalize_mean"]), tuple(meta["normalize_std"])
        except (CheckpointError, KeyError, TypeError) as missing:
            raise ExportError(f"the run's data is not available ({e}), nor its teacher's sidecar ({missing}): the "
                              f"input normalisation is unknown") from None
        pixels = torch.randint(0, 256, (VERIFY_BATCH, *shape), generator=torch.Generator().manual_seed(0))
        x = pixels.float().div(255.0)
        return _Inputs(x, f"random images (data not available: {e})", mean, std, meta.get("class_names"))
    x = data.val.x[:VERIFY_BATCH].cpu().float().div(255.0).contiguous()
    return _Inputs(x, f"{len(x)} validation images", tuple(data.mean), tuple(data.std), tuple(data.class_names))


class Normalized(nn.Module):
    """``net`` behind the data's normalisation: takes float images in [0, 1], N x C x H x W."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _metadata(inputs: _Inputs, what: str) -> dict[str, str]:
    """What the exported file says about itself (ONNX ``metadata_props``, TorchScript extra file ``ddc_env.json``)."""
    return {"producer": f"ddc-env {__version__}", "model": what,
            "input": "float32 images in [0, 1], N x C x H x W; the model normalises them itself",
            "normalize_mean": json.dumps(list(inputs.mean)), "normalize_std": json.dumps(list(inputs.std)),
            **({"class_names": json.dumps(list(inputs.class_names))} if inputs.class_names else {})}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def export_model(run_dir: str | Path, *, fmt: str = "torchscript", spec_hash: str | None = None,
                 label: str | None = None, out: str | Path | None = None) -> ExportResult:
    """Export a run's model (see the module docstring) to ``out`` (default ``RUN_DIR/export/<name>.ts|.onnx``)
    and check it; raises :class:`ExportError` when the model cannot be found, exported or matched."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()
    run = read_run(run_dir)
    _check_choice(run, spec_hash, label)
    data = None
    if spec_hash is not None:
        spec = _evaluated_spec(run, spec_hash)
        best = run.summary.get("best_student") or {}
        if best.get("spec_hash") == spec.hash() and "weights" in best:  # saved already: no need to train it again
            net, _ = load_model(run.path, best)
        else:
            task, distiller = load_live(run)
            net, _ = distiller.train_student(spec)
            data = task.data
        what, name = f"student {spec.hash()} of {run.path}", f"spec_{spec.hash()[:12]}"
    else:
        model, name = _saved_model(run, label)
        if "weights" not in model.files and "torchscript" not in model.files:
            raise ExportError(f"{run.path} ran on a benchmark twin: it holds the best student's spec, not trained "
                              f"weights; export it with --spec {model.record.get('spec_hash')} once its env is live")
        net, spec = load_model(run.path, model.files)
        what = f"{model.method} of {run.path}" if run.kind == "baseline" else f"best student of {run.path}"
    shape = (spec.in_channels, *spec.input_size) if spec is not None else None
    inputs = _inputs(run, data, shape)
    if not isinstance(net, torch.jit.ScriptModule):
        net = net.cpu().float().to(memory_format=torch.contiguous_format)
    out = Path(out) if out is not None else run.path / "export" / f"{_slug(name)}{SUFFIXES[fmt]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    convert = _to_torchscript if fmt == "torchscript" else _to_onnx
    try:
        with torch.no_grad(), quiet_jit():  # traced once: the exporters take a TorchScript module of any model
            traced = torch.jit.trace(Normalized(net, inputs.mean, inputs.std).eval(), inputs.x[:TRACE_BATCH])
            expected = net(normalize((inputs.x * 255).round().to(torch.uint8), inputs.mean, inputs.std))
            diff = convert(traced, inputs.x, expected, out, _metadata(inputs, what))
    except ExportError:
        out.unlink(missing_ok=True)  # no unusable file is left behind
        raise
    return ExportResult(out, what, fmt, diff, inputs.description)


def _to_torchscript(net: torch.jit.ScriptModule, x: torch.Tensor, expected: torch.Tensor, out: Path,
                    metadata: dict[str, str]) -> float:
    """Save ``net`` with ``metadata`` (extra file ``ddc_env.json``), reload it and compare outputs."""
    with quiet_jit():
        buffer = io.BytesIO()
        torch.jit.save(net, buffer, _extra_files={"ddc_env.json": json.dumps(metadata)})
        atomic_write_bytes(out, buffer.getvalue())
        got = torch.jit.load(str(out), map_location="cpu")(x)
    diff = (got - expected).abs().max().item()
    if not diff <= TORCHSCRIPT_ATOL:
        raise ExportError(f"the TorchScript module's outputs differ from the eager model's by up to {diff:.3g} "
                          f"(> {TORCHSCRIPT_ATOL}); not usable")
    return diff


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({e}): pip install 'ddc-env[onnx]'") from None


def _to_onnx(net: torch.jit.ScriptModule, x: torch.Tensor, expected: torch.Tensor, out: Path,
             metadata: dict[str, str]) -> float:
    """Export with torch's TorchScript-based ONNX exporter (the dynamo exporter needs onnxscript, which the
    ``onnx`` extra does not install) with ``metadata`` as ``metadata_props``, check the graph and compare
    onnxruntime's outputs."""
    import onnx  # here: onnx and onnxruntime are an optional extra (checked by _require_onnx)
    import onnxruntime

    axes = {"input": {0: "batch"}, "logits": {0: "batch"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its successor
            warnings.filterwarnings("ignore", "no signature found", UserWarning)  # (for TorchScript modules)
            torch.onnx.export(net, (x[:TRACE_BATCH],), str(out), dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes=axes)
        proto = onnx.load(str(out))
        onnx.helper.set_model_props(proto, metadata)
        onnx.checker.check_model(proto)
        atomic_write_bytes(out, proto.SerializeToString())
    except Exception as e:  # the exporter's errors have many types (unsupported ops, quantized modules...)
        raise ExportError(f"cannot export the model to ONNX: {' '.join(str(e).split())[:500]}") from e
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x.numpy()})[0]
    want = expected.numpy()
    diff = float(np.abs(got - want).max())
    if not np.allclose(got, want, atol=ONNX_ATOL, rtol=ONNX_RTOL):
        raise ExportError(f"onnxruntime's outputs differ from the torch model's by up to {diff:.3g} "
                          f"(atol {ONNX_ATOL}, rtol {ONNX_RTOL}); not usable")
    return diff


__all__ = ["FORMATS", "ExportError", "ExportResult", "Normalized", "export_model"]
