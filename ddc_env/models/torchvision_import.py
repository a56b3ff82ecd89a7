"""Weights in torchvision's layout (a ResNet's ``conv1.weight``, ``layer1.0.bn1.running_mean``, ``fc.bias``) to and
from our :class:`~ddc_env.arch.Net` layout (``units.conv1.conv.weight``, ``units.layer1_0.bn1.running_mean``,
``units.fc.fc.bias``).

Each model registers how torchvision names its weights (``register_model(torchvision_key=...)``); for ResNets,
blocks already carry torchvision's attribute names, so only the stem (``conv1``/``bn1``) and the classifier (``fc``)
are renamed. Loading is strict: every missing or unexpected key and every shape mismatch is reported.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..arch.build import Net, module_key, state_dict_shapes
from ..arch.spec import NetSpec
from .registry import MODELS, get_model_entry
from .resnet import torchvision_resnet_key

StateDict = Mapping[str, torch.Tensor]

_RESNETS: dict[tuple[tuple[int, ...], bool], str] = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
}


def torchvision_key_map(spec: NetSpec) -> dict[str, str]:
    """Our state-dict key -> torchvision's, for every entry of ``build(spec).state_dict()``. The spec's model (its
    ``arch``) says how torchvision names its weights (``register_model(torchvision_key=...)``); a spec of no registered
    model with a layout is read with torchvision's ResNet names (``conv1``/``bn1``, ``layer<S>.<i>``, ``fc``)."""
    entry = get_model_entry(spec.arch) if spec.arch in MODELS else None
    key = entry.torchvision_key if entry is not None and entry.torchvision_key is not None else torchvision_resnet_key
    units = {module_key(u.name): u for u in spec.units}
    mapping = {}
    for our_key in state_dict_shapes(spec):
        _, unit_key, rest = our_key.split(".", 2)
        mapping[our_key] = key(units[unit_key], rest)
    return mapping


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(expected: Mapping[str, torch.Size], state_dict: StateDict, what: str) -> None:
    """Raise ValueError naming every missing/unexpected key and shape mismatch of ``state_dict``."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    not_tensor = [k for k in state_dict if k in expected and not isinstance(state_dict[k], torch.Tensor)]
    shapes = [f"{k}: expected {tuple(expected[k])} got {tuple(state_dict[k].shape)}" for k in expected
              if k in state_dict and k not in not_tensor and state_dict[k].shape != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if not_tensor:
        problems.append(f"values that are not tensors: {_listing(not_tensor)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_listing(shapes, 4)}")
    if problems:
        raise ValueError(f"state dict does not fit {what}: " + "; ".join(problems))


def from_torchvision_state_dict(spec: NetSpec, state_dict: StateDict) -> dict[str, torch.Tensor]:
    """A torchvision-layout ResNet state dict renamed to our layout, checked strictly against ``spec``."""
    mapping = torchvision_key_map(spec)
    shapes = {mapping[k]: shape for k, shape in state_dict_shapes(spec).items()}
    check_state_dict(shapes, state_dict, _describe(spec, "torchvision layout"))
    return {ours: state_dict[tv] for ours, tv in mapping.items()}


def to_torchvision_state_dict(net: Net) -> dict[str, torch.Tensor]:
    """``net``'s weights under torchvision's ResNet names (loadable by ``torchvision.models.resnet18`` etc.
    with the matching stem)."""
    mapping = torchvision_key_map(net.spec)
    return {mapping[k]: v for k, v in net.state_dict().items()}


def detect_layout(state_dict: StateDict) -> str:
    """``"ddc"`` for our layout (keys ``units.*``), ``"torchvision"`` for torchvision's ResNet layout."""
    keys = list(state_dict)
    if keys and all(k.startswith("units.") for k in keys):
        return "ddc"
    if "conv1.weight" in state_dict or any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    raise ValueError(f"unrecognised state dict layout (first keys: {_listing(keys, 4) or 'none'}); expected "
                     f"keys 'units.*' (ddc_env) or torchvision's ResNet keys ('conv1.weight', 'layer1.0.*', 'fc.*')")


def load_state_dict(spec: NetSpec, state_dict: StateDict) -> Net:
    """A ``Net`` of ``spec`` holding ``state_dict``'s weights, in either layout (detected from the keys)."""
    if detect_layout(state_dict) == "torchvision":
        return load_torchvision_state_dict(spec, state_dict)
    check_state_dict(state_dict_shapes(spec), state_dict, _describe(spec, "ddc_env layout"))
    net = Net(spec)
    net.load_state_dict(state_dict)
    return net


def load_torchvision_state_dict(spec: NetSpec, state_dict: StateDict) -> Net:
    """A ``Net`` of ``spec`` holding the weights of a torchvision-layout ResNet state dict.

    Example: ``load_torchvision_state_dict(resnet18(num_classes=10), torch.load("resnet18.pt"))``.
    """
    net = Net(spec)
    net.load_state_dict(from_torchvision_state_dict(spec, state_dict))
    return net


def infer_resnet(state_dict: StateDict) -> tuple[str, dict[str, Any]]:
    """(model name, builder kwargs) of the torchvision-layout ResNet that ``state_dict`` belongs to."""
    keys = list(state_dict)
    if "conv1.weight" not in state_dict or "fc.weight" not in state_dict:
        raise ValueError(f"cannot infer a ResNet from a state dict without 'conv1.weight' and 'fc.weight' "
                         f"(first keys: {_listing(keys, 4) or 'none'})")
    layers = tuple(len({k.split(".")[1] for k in keys if k.startswith(f"layer{s}.")}) for s in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in state_dict
    name = _RESNETS.get((layers, bottleneck))
    if name is None:
        raise ValueError(f"state dict has {'bottleneck' if bottleneck else 'basic'} blocks per stage {layers}, "
                         f"which is none of: " + ", ".join(f"{n} {l}" for (l, _), n in _RESNETS.items()))
    conv1 = state_dict["conv1.weight"]
    stem = {3: "cifar", 7: "imagenet"}.get(conv1.shape[-1])
    if stem is None:
        raise ValueError(f"conv1.weight has kernel {conv1.shape[-1]}; expected 3 (CIFAR stem) or 7 (ImageNet stem)")
    return name, {"num_classes": int(state_dict["fc.weight"].shape[0]), "in_channels": int(conv1.shape[1]),
                  "stem": stem}


def _describe(spec: NetSpec, layout: str) -> str:
    return f"the {spec.arch} spec with {spec.num_classes} classes ({layout})"
