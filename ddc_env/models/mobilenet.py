"""MobileNetV2 (Sandler et al. 2018) in torchvision's layout, with a CIFAR variant (stride-1 stem, and the second
stage at stride 1, the usual change for 32x32 inputs)."""
from __future__ import annotations

from ..arch.spec import Conv, GlobalPool, Linear, NetSpec, Unit
from ..arch.units.inverted_residual import InvertedResidual
from .registry import register_model

__all__ = ["MOBILENET_V2_SETTINGS", "mobilenet_v2", "torchvision_mobilenet_key"]

# (expansion t, output channels c, blocks n, stride s of the first block) per stage, as in the paper and torchvision
MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

_INVERTED = {"expand_conv": "conv.0.0", "expand_bn": "conv.0.1", "dw_conv": "conv.1.0", "dw_bn": "conv.1.1",
             "project_conv": "conv.2", "project_bn": "conv.3"}
_INVERTED_NO_EXPAND = {"dw_conv": "conv.0.0", "dw_bn": "conv.0.1", "project_conv": "conv.1", "project_bn": "conv.2"}


def torchvision_mobilenet_key(unit: Unit, rest: str) -> str:
    """torchvision's name of parameter ``rest`` of our unit ``unit`` in a MobileNetV2 (``features.<i>`` and
    ``classifier.1``, whose Dropout has no parameters)."""
    module, param = rest.split(".", 1)
    if unit.name.startswith("classifier"):
        return f"{unit.name}.{param}"
    if module in ("conv", "bn"):  # a conv + BN + ReLU6 (Conv2dNormActivation): .0 and .1
        return f"{unit.name}.{0 if module == 'conv' else 1}.{param}"
    names = _INVERTED if getattr(unit, "expand", False) else _INVERTED_NO_EXPAND
    return f"{unit.name}.{names[module]}.{param}"


@register_model(torchvision_key=torchvision_mobilenet_key)
def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
                 stem: str = "cifar") -> NetSpec:
    """MobileNetV2 with width multiplier 1.0: a 3x3 stem conv (32), 17 inverted residual blocks, a 1x1 conv (1280),
    global average pool, the classifier. ``stem="imagenet"`` is torchvision's (stem and second stage at stride 2);
    ``"cifar"`` runs both at stride 1 (32x32 inputs keep 4x4 maps at the end)."""
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
    cifar = stem == "cifar"
    units: list[Unit] = [Conv("features.0", 32, kernel=3, stride=1 if cifar else 2, padding=1, relu6=True)]
    channels, index = 32, 1
    for stage, (t, c, n, s) in enumerate(MOBILENET_V2_SETTINGS):
        for i in range(n):
            stride = 1 if i > 0 or (cifar and stage == 1) else s
            shortcut = "identity" if stride == 1 and channels == c else "none"
            units.append(InvertedResidual(f"features.{index}", c, channels * t, stride, t != 1, shortcut))
            channels, index = c, index + 1
    units += [Conv(f"features.{index}", 1280, kernel=1, padding=0, relu6=True), GlobalPool("avgpool"),
              Linear("classifier.1", num_classes)]
    return NetSpec(tuple(units), in_channels, input_size, "mobilenet_v2")
