"""Post-training static int8 quantization (Jacob et al. 2018, "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference") of the teacher or of a saved student, with PyTorch's FX
graph mode tooling (``torch.ao.quantization.quantize_fx``).

The float model is traced by FX; its ``torch.relu`` calls are rewritten to ``F.relu``, the form the
backend's fusion patterns name, so that Conv+BatchNorm+ReLU, Linear+ReLU and residual Add+ReLU fuse into
single int8 kernels, and its global average pool to ``adaptive_avg_pool2d`` (see
:func:`quantizable_graph`). ``prepare_fx`` with the backend's default qconfig mapping (``x86``/``fbgemm``: int8
per-channel symmetric weights, uint8 affine activations from histogram observers) inserts observers,
``calibration_images`` normalised training images are run through it in float32 on the CPU (no autocast,
no channels_last), and ``convert_fx`` produces the int8 model, which takes float32 inputs and runs on the
CPU only. FX graph mode quantization is deprecated in favour of torchao's PT2E flow, but is present and
works in the installed torch (2.14.1); its deprecation and observer warnings are silenced here.

Both models are measured side by side on the CPU: validation accuracy on float32 inputs, ``serialized_size``, and
their speed ratio timed in interleaved rounds (:func:`ddc_env.latency.measure_paired`, with the env's latency batch
size and threads; measured even with ``latency="flops"``: speed is the point of int8). The float model's latency is
the env's time model's; the int8 model's is that times the measured ratio, so both live on the teacher's scale.
The float model is logged as ``fp32_<name>``; the int8 model is the result, saved as TorchScript.
"""
from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from ddc_env.arch import NetSpec, build
from ddc_env.latency import measure_paired
from ddc_env.metrics import serialized_size
from ddc_env.train import chunks
from ddc_env.validate import check_choice, check_int

from .common import Context

BACKENDS = ("x86", "fbgemm")
CALIBRATION_BATCH = 128


@dataclass(frozen=True)
class Kwargs:
    """``model``: "teacher", or the path of a network's spec ``.json`` whose state dict is the ``.pt`` of the
    same name next to it (a search's ``best_student.json``, a baseline's ``models/<label>.json``);
    ``calibration_images``: training images the activation ranges are observed on; ``backend``: the
    quantization backend whose qconfig is used."""

    model: str = "teacher"
    calibration_images: int = 512
    backend: str = "x86"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be 'teacher' or a spec .json path, got {self.model!r}")
        if self.model != "teacher":
            path = Path(self.model)
            if path.suffix != ".json" or not path.is_file() or not path.with_suffix(".pt").is_file():
                raise ValueError(f"model must be 'teacher' or the path of an existing spec .json with its weights "
                                 f".pt next to it (e.g. a search's best_student.json); got {self.model!r}")
        check_int(self.calibration_images, "calibration_images", minimum=1)
        check_choice(self.backend, "backend", BACKENDS)


def load_model(ctx: Context, model: str) -> tuple[nn.Module, NetSpec, str]:
    """(float32 CPU module in eval mode, its spec, a short name) of ``model``: a copy of the teacher, or a
    spec .json + weights .pt pair; the network must take the env's input shape."""
    if model == "teacher":
        net, spec, name = copy.deepcopy(ctx.teacher_net), ctx.teacher_spec, "teacher"
    else:
        path = Path(model)
        spec = NetSpec.from_json(path.read_text())
        net = build(spec)
        net.load_state_dict(torch.load(path.with_suffix(".pt"), map_location="cpu", weights_only=True))
        name = path.stem
    shape = (spec.in_channels, *spec.input_size)
    if shape != tuple(ctx.task.input_shape):
        raise ValueError(f"{model} takes inputs of shape {shape}, the env's images are {ctx.task.input_shape}")
    return net.cpu().to(memory_format=torch.contiguous_format).float().eval(), spec, name


def output_classes(ctx: Context, spec: NetSpec) -> list[int] | None:
    """The logit columns of the data's classes: None when the network has one output per data class, the
    class subset's columns for a network with the teacher's outputs (the teacher on a class subset)."""
    classes = ctx.task.class_indices
    if spec.num_classes == ctx.distiller.data.num_classes:
        return None
    if classes is not None and spec.num_classes == ctx.teacher_spec.num_classes:
        return list(classes)
    raise ValueError(f"the model has {spec.num_classes} outputs but the data has {ctx.distiller.data.num_classes} "
                     f"classes")


def quantizable_graph(net: nn.Module) -> fx.GraphModule:
    """``net`` traced by FX with two rewrites for the int8 backend: ``torch.relu`` -> ``F.relu``, the form its
    fusion patterns name; the global average pool ``x.mean(dim=(2, 3))`` -> ``adaptive_avg_pool2d(x, 1)``
    flattened, the same values (the quantized ``mean`` over H, W fails on the channels_last int8 tensors
    the quantized convs return)."""
    traced = fx.symbolic_trace(net)
    graph = traced.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.relu:
            node.target = F.relu
        elif (node.op == "call_method" and node.target == "mean" and len(node.args) == 1
              and node.kwargs == {"dim": (2, 3)}):
            with graph.inserting_before(node):
                pooled = graph.call_function(F.adaptive_avg_pool2d, (node.args[0], 1))
                flat = graph.call_function(torch.flatten, (pooled, 1))
            node.replace_all_uses_with(flat)
            graph.erase_node(node)
    traced.recompile()
    return traced


def quantize_int8(net: nn.Module, calibration: torch.Tensor, backend: str) -> nn.Module:
    """The int8 FX-quantized copy of the float32 CPU module ``net``, calibrated on the normalised images
    ``calibration``."""
    traced = quantizable_graph(copy.deepcopy(net))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        prepared = prepare_fx(traced, get_default_qconfig_mapping(backend), (calibration[:1],))
        with torch.inference_mode():
            for s in chunks(len(calibration), CALIBRATION_BATCH):
                prepared(calibration[s])
        return convert_fx(prepared).eval()


@torch.inference_mode()
def cpu_accuracy(ctx: Context, net: nn.Module, classes: Sequence[int] | None, batch_size: int = 256) -> float:
    """Validation accuracy of a CPU module on float32 inputs, no autocast (the evaluator's validation split)."""
    ev = ctx.distiller
    correct = 0
    for s in chunks(len(ev.val_x), batch_size):
        logits = net(ev.normalized(ev.val_x[s]).float().cpu())
        if classes is not None:
            logits = logits[:, list(classes)]
        correct += int((logits.argmax(1) == ev.val_y[s].cpu()).sum())
    return correct / len(ev.val_x)


def run(ctx: Context, *, model: str, calibration_images: int, backend: str) -> None:
    """Quantize ``model``; log its float32 record (``fp32_<name>``) and save the int8 result (``int8_<name>``)."""
    start = time.perf_counter()
    net, spec, name = load_model(ctx, model)
    classes = output_classes(ctx, spec)
    calibration = ctx.train_images(calibration_images).float().cpu()
    int8 = quantize_int8(net, calibration, backend)
    protocol = dataclasses.replace(ctx.scorer.protocol, device="cpu")
    paired = measure_paired(int8, net, ctx.task.input_shape, protocol)  # int8 against its float model, one window
    fp32 = ctx.measure(net, spec=spec, accuracy=cpu_accuracy(ctx, net, classes), size_bytes=serialized_size(net),
                       model=model, precision="fp32")
    ctx.log(f"fp32_{name}", fp32)
    latency = None if fp32["latency_ms"] is None else fp32["latency_ms"] * paired.ratio
    size = serialized_size(int8)
    record = ctx.measure(int8, spec=spec, accuracy=cpu_accuracy(ctx, int8, classes), latency_ms=latency,
                         size_bytes=size, model=model, precision="int8", backend=backend,
                         calibration_images=len(calibration),
                         **{f"fp32_{k}": fp32[k] for k in ("val_acc", "latency_ms", "size_bytes")},
                         int8_speedup=1.0 / paired.ratio, int8_size_ratio=size / fp32["size_bytes"])
    ctx.result(f"int8_{name}", int8, record, torchscript=True, seconds=time.perf_counter() - start)
