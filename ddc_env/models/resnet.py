"""ResNet-18/34/50 (torchvision's layout; a CIFAR stem by default)."""
from __future__ import annotations

import re

from ..arch.spec import Block, Conv, GlobalPool, Linear, NetSpec, Pool, Unit
from .registry import register_model

__all__ = ["resnet18", "resnet34", "resnet50", "torchvision_resnet_key"]


def torchvision_resnet_key(u: Unit, rest: str) -> str:
    """torchvision's name of parameter ``rest`` of our unit ``u`` in a ResNet: blocks keep their names, the stem's
    conv/BN are ``conv1``/``bn1``, the classifier is ``fc``."""
    unit = u.name
    if unit.startswith("layer"):
        return f"{unit}.{rest}"
    if unit == "fc":
        return f"fc.{rest.removeprefix('fc.')}"
    stem = re.fullmatch(r"conv(\d*)", unit)
    if stem is None:
        raise ValueError(f"unit {unit!r} has no counterpart in torchvision's ResNet layout; supported: Conv "
                         f"'conv<N>' (with BN 'bn<N>'), Blocks 'layer<S>.<i>', the classifier 'fc'")
    sub, param = rest.split(".", 1)
    return f"{unit}.{param}" if sub == "conv" else f"bn{stem.group(1)}.{param}"


def _resnet(arch: str, layers: tuple[int, ...], bottleneck: bool, num_classes: int, in_channels: int,
            input_size: tuple[int, int], stem: str) -> NetSpec:
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
    units: list[Unit] = []
    if stem == "cifar":
        units.append(Conv("conv1", 64, kernel=3, stride=1, padding=1))
    else:
        units += [Conv("conv1", 64, kernel=7, stride=2, padding=3), Pool("maxpool", "max", 3, 2, 1)]
    expansion = 4 if bottleneck else 1
    channels = 64
    for stage, blocks in enumerate(layers, start=1):
        planes = 64 * 2 ** (stage - 1)
        for i in range(blocks):
            stride = 2 if (i == 0 and stage > 1) else 1
            out = planes * expansion
            shortcut = "projection" if (stride != 1 or channels != out) else "identity"
            units.append(Block(f"layer{stage}.{i}", out, planes, stride, shortcut, bottleneck))
            channels = out
    units += [GlobalPool("avgpool"), Linear("fc", num_classes)]
    return NetSpec(tuple(units), in_channels, input_size, arch)


@register_model(torchvision_key=torchvision_resnet_key)
def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
             stem: str = "cifar") -> NetSpec:
    """ResNet-18 (basic blocks 2-2-2-2); ``stem="cifar"`` is a 3x3 stride-1 conv without max-pool."""
    return _resnet("resnet18", (2, 2, 2, 2), False, num_classes, in_channels, input_size, stem)


@register_model(torchvision_key=torchvision_resnet_key)
def resnet34(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
             stem: str = "cifar") -> NetSpec:
    """ResNet-34 (basic blocks 3-4-6-3)."""
    return _resnet("resnet34", (3, 4, 6, 3), False, num_classes, in_channels, input_size, stem)


@register_model(torchvision_key=torchvision_resnet_key)
def resnet50(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
             stem: str = "cifar") -> NetSpec:
    """ResNet-50 (bottleneck blocks 3-4-6-3)."""
    return _resnet("resnet50", (3, 4, 6, 3), True, num_classes, in_channels, input_size, stem)
