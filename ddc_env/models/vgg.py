"""VGG-11/13/16/19 with BatchNorm and a CIFAR-style head (global average pool, FC layers), and DDC's small VGG
student."""
from __future__ import annotations

from ..arch.spec import Conv, GlobalPool, Linear, NetSpec, Pool, Unit
from .registry import register_model

__all__ = ["DDC_SMALL_VGG_CFG", "VGG_CFGS", "ddc_small_vgg", "vgg11", "vgg13", "vgg16", "vgg19"]

VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
DDC_SMALL_VGG_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, "M", 512, "M")


def _vgg_features(cfg: tuple[int | str, ...], input_size: tuple[int, int], width: float = 1.0) -> list[Unit]:
    """3x3 conv + BN + ReLU per number (channels times ``width``, rounded to a multiple of 8, at least 8) and a
    2x2 max-pool per "M"; pools that would shrink the maps below 1x1 are left out."""
    units: list[Unit] = []
    size = min(input_size)
    for i, v in enumerate(cfg):
        if v != "M":
            units.append(Conv(f"features.{i}", max(8, int(int(v) * width / 8 + 0.5) * 8)))
        elif size >= 2:  # small inputs (28x28 MNIST) run out of pixels before the last pools
            units.append(Pool(f"features.{i}", "max", 2, 2))
            size //= 2
    return units


def _vgg(arch: str, num_classes: int, in_channels: int, input_size: tuple[int, int],
         hidden: tuple[int, ...]) -> NetSpec:
    units = _vgg_features(VGG_CFGS[arch], input_size)
    units.append(GlobalPool("avgpool"))
    for j, width in enumerate(hidden):
        units.append(Linear(f"classifier.{j}", width, relu=True))
    units.append(Linear(f"classifier.{len(hidden)}", num_classes))
    return NetSpec(tuple(units), in_channels, input_size, arch)


@register_model()
def vgg11(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-11 with BatchNorm, CIFAR-style head: global average pool, ``hidden`` FC layers, classifier.
    Max-pools that would shrink maps below 1x1 (inputs smaller than 32x32) are left out."""
    return _vgg("vgg11", num_classes, in_channels, input_size, hidden)


@register_model()
def vgg13(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-13 with BatchNorm."""
    return _vgg("vgg13", num_classes, in_channels, input_size, hidden)


@register_model()
def vgg16(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-16 with BatchNorm."""
    return _vgg("vgg16", num_classes, in_channels, input_size, hidden)


@register_model()
def vgg19(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-19 with BatchNorm."""
    return _vgg("vgg19", num_classes, in_channels, input_size, hidden)


def ddc_small_vgg(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
                  width: float = 1.0) -> NetSpec:
    """DDC's hand-designed student: convs 64-M-128-M-256-256-M-512-M-512-M (3x3 conv + BN + ReLU, M = 2x2
    max-pool), global average pool, one FC classifier. ``width`` scales every conv's channels (rounded to a
    multiple of 8, at least 8), e.g. for teacher-assistant chains. Not registered: it is a student, never a
    teacher."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a number > 0, got {width!r}")
    units = _vgg_features(DDC_SMALL_VGG_CFG, input_size, width)
    units += [GlobalPool("avgpool"), Linear("classifier", num_classes)]
    return NetSpec(tuple(units), in_channels, input_size, "ddc_small_vgg")
