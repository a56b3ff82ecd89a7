"""Teacher checkpoints: a state dict ``<name>.pt`` plus a JSON sidecar ``<name>.pt.json`` holding what
torchvision's ``WeightsEnum`` entries hold (architecture, data, accuracy, recipe, num_params, sha256).

The sha256 in the sidecar is checked before the weights are unpickled (``weights_only=True``). Sidecars
without a ``spec`` (plain torchvision-layout ResNets such as the shared teacher) are loaded by giving the
architecture, or by inferring the ResNet from the state dict's shapes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..arch.build import Net
from ..arch.spec import NetSpec, SpecError
from ..paths import atomic_write_bytes, atomic_write_text
from .registry import get_model_spec
from .torchvision_import import check_state_dict, detect_layout, infer_resnet, load_state_dict, state_dict_shapes

FORMAT = "ddc_env.teacher/1"


class CheckpointError(ValueError):
    """A teacher checkpoint that is missing, corrupt, or does not fit its architecture."""


@dataclass
class TeacherCheckpoint:
    """A loaded (or just saved) teacher: the module in eval mode, its spec, its sidecar metadata, its path."""

    net: Net
    spec: NetSpec
    meta: dict[str, Any]
    path: Path

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalisation mean the teacher was trained with."""
        return tuple(self.meta["normalize_mean"])

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel normalisation std the teacher was trained with."""
        return tuple(self.meta["normalize_std"])


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a checkpoint: ``<file>.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def package_version() -> str:
    """The installed ddc-env version, or "unknown" when running from a source tree."""
    try:
        return metadata.version("ddc-env")
    except metadata.PackageNotFoundError:
        return "unknown"


def save_teacher(net: Net, spec: NetSpec, meta: Mapping[str, Any], path: str | os.PathLike[str]
                 ) -> TeacherCheckpoint:
    """Write ``net``'s state dict to ``path`` and its sidecar next to it, each atomically.

    ``meta`` holds the caller's facts (model_kwargs, class_names, class_indices, data, normalize_mean/std,
    val_acc, test_acc, recipe, seed, train_seconds, ...); the architecture fields, num_params, flops,
    sha256, created and package_version are filled in here.
    """
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    try:  # never write a checkpoint that would not load
        check_state_dict(state_dict_shapes(spec), state, f"the {spec.arch} spec")
    except ValueError as e:
        raise CheckpointError(f"refusing to save {path}: {e}") from None
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    full = {
        "format": FORMAT,
        "model": spec.arch,
        **meta,
        "num_classes": spec.num_classes,
        "num_params": spec.params,
        "flops": spec.flops,
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": package_version(),
        "spec_hash": spec.hash(),
        "spec": spec.to_dict(),
    }
    atomic_write_bytes(path, data)
    atomic_write_text(sidecar_path(path), json.dumps(full, indent=1) + "\n")
    return TeacherCheckpoint(net.eval(), spec, full, path)


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of checkpoint ``path`` as a dict; CheckpointError when absent or not a JSON object."""
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"teacher checkpoint {path} has no metadata sidecar {side}; a checkpoint is the "
                              f".pt file plus its .pt.json sidecar (as written by save_teacher)")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read sidecar {side}: {e}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"sidecar {side} holds a JSON {type(meta).__name__}, not an object")
    return meta


def _read_verified(path: Path, meta: Mapping[str, Any]) -> bytes:
    """The checkpoint's bytes, after checking them against the sidecar's sha256."""
    expected = meta.get("sha256")
    if not isinstance(expected, str):
        raise CheckpointError(f"sidecar {sidecar_path(path)} has no 'sha256' entry; cannot verify {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read teacher checkpoint {path}: {e}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.lower():
        raise CheckpointError(f"sha256 mismatch for {path}: sidecar expects {expected}, file has {actual}; "
                              f"the file is corrupt or was replaced")
    return data


def _state_dict(data: bytes, path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load {path} as a torch state dict: {reason}") from None
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path} does not hold a state dict (a non-empty mapping of names to tensors); "
                              f"got {type(obj).__name__}")
    return dict(obj)


def _resolve_spec(meta: Mapping[str, Any], state: Mapping[str, torch.Tensor], path: Path, model: str | None,
                  model_kwargs: Mapping[str, Any] | None) -> tuple[NetSpec, str, dict[str, Any]]:
    """(spec, model name, model kwargs): from the arguments, else the sidecar's spec, else the state dict."""
    if model is not None:
        kwargs = dict(model_kwargs or {})
        return get_model_spec(model, **kwargs), model, kwargs
    if "spec" in meta:
        try:
            spec = NetSpec.from_dict(meta["spec"])
        except SpecError as e:
            raise CheckpointError(f"sidecar {sidecar_path(path)} holds an invalid spec: {e}") from None
        return spec, str(meta.get("model", spec.arch)), dict(meta.get("model_kwargs", {}))
    if detect_layout(state) != "torchvision":
        raise CheckpointError(f"sidecar {sidecar_path(path)} has no 'spec'; pass model= and model_kwargs=")
    try:
        name, kwargs = infer_resnet(state)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}; pass model= and model_kwargs=") from None
    kwargs.update(model_kwargs or {})
    return get_model_spec(name, **kwargs), name, kwargs


def read_spec(path: str | os.PathLike[str]) -> tuple[NetSpec, dict[str, Any]]:
    """A checkpoint's architecture and sidecar without verifying or loading its weights (cheap: the sidecar's spec,
    or, for a torchvision state dict, the ResNet its tensor shapes describe, read memory-mapped);
    :func:`load_teacher` does both."""
    meta = read_sidecar(path)
    if isinstance(meta.get("spec"), dict):
        state: Mapping[str, torch.Tensor] = {}
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # torch.load raises many types
            raise CheckpointError(f"cannot load {path} as a torch state dict: {e}") from None
    return _resolve_spec(meta, state, Path(path), None, None)[0], meta


def load_teacher(path: str | os.PathLike[str], *, model: str | None = None,
                 model_kwargs: Mapping[str, Any] | None = None,
                 map_location: str | torch.device = "cpu") -> TeacherCheckpoint:
    """Load and verify a teacher checkpoint; the returned module is in eval mode on ``map_location``.

    The architecture is ``model(**model_kwargs)`` when ``model`` is given, else the sidecar's spec, else
    (sidecars without a spec) the torchvision ResNet inferred from the state dict, updated by
    ``model_kwargs`` (e.g. ``{"input_size": (64, 64)}``). ``meta`` is the sidecar, completed with the
    architecture actually loaded (model, model_kwargs, spec, num_classes, num_params, flops).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint {path} does not exist" +
                              (" (it is a directory)" if path.is_dir() else ""))
    meta = read_sidecar(path)
    state = _state_dict(_read_verified(path, meta), path, map_location)
    spec, name, kwargs = _resolve_spec(meta, state, path, model, model_kwargs)
    try:
        net = load_state_dict(spec, state)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    meta.update(model=name, model_kwargs=kwargs, spec=spec.to_dict(), num_classes=spec.num_classes,
                num_params=spec.params, flops=spec.flops)
    return TeacherCheckpoint(net.to(map_location).eval(), spec, meta, path)
