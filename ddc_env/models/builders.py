"""Teacher architectures as NetSpecs, named like torchvision.models (``resnet18(num_classes=10)``)."""
from __future__ import annotations

from ..arch.spec import Block, Conv, Flatten, GlobalPool, Linear, NetSpec, Pool, Unit

VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}
DDC_SMALL_VGG_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, "M", 512, "M")


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


def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
             stem: str = "cifar") -> NetSpec:
    """ResNet-18 (basic blocks 2-2-2-2); ``stem="cifar"`` is a 3x3 stride-1 conv without max-pool."""
    return _resnet("resnet18", (2, 2, 2, 2), False, num_classes, in_channels, input_size, stem)


def resnet34(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
             stem: str = "cifar") -> NetSpec:
    """ResNet-34 (basic blocks 3-4-6-3)."""
    return _resnet("resnet34", (3, 4, 6, 3), False, num_classes, in_channels, input_size, stem)


def resnet50(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
             stem: str = "cifar") -> NetSpec:
    """ResNet-50 (bottleneck blocks 3-4-6-3)."""
    return _resnet("resnet50", (3, 4, 6, 3), True, num_classes, in_channels, input_size, stem)


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


def vgg11(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-11 with BatchNorm, CIFAR-style head: global average pool, ``hidden`` FC layers, classifier.
    Max-pools that would shrink maps below 1x1 (inputs smaller than 32x32) are left out."""
    return _vgg("vgg11", num_classes, in_channels, input_size, hidden)


def vgg13(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-13 with BatchNorm."""
    return _vgg("vgg13", num_classes, in_channels, input_size, hidden)


def vgg16(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-16 with BatchNorm."""
    return _vgg("vgg16", num_classes, in_channels, input_size, hidden)


def vgg19(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
          hidden: tuple[int, ...] = (512,)) -> NetSpec:
    """VGG-19 with BatchNorm."""
    return _vgg("vgg19", num_classes, in_channels, input_size, hidden)


def ddc_small_vgg(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32),
                  width: float = 1.0) -> NetSpec:
    """DDC's hand-designed student: convs 64-M-128-M-256-256-M-512-M-512-M (3x3 conv + BN + ReLU, M = 2x2
    max-pool), global average pool, one FC classifier. ``width`` scales every conv's channels (rounded to a
    multiple of 8, at least 8), e.g. for teacher-assistant chains. Not in :data:`MODELS`: it is a student,
    never a teacher."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a number > 0, got {width!r}")
    units = _vgg_features(DDC_SMALL_VGG_CFG, input_size, width)
    units += [GlobalPool("avgpool"), Linear("classifier", num_classes)]
    return NetSpec(tuple(units), in_channels, input_size, "ddc_small_vgg")


def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: tuple[int, int] = (28, 28)) -> NetSpec:
    """LeNet-5 with BatchNorm and max-pool: conv 6@5x5 (same) - pool - conv 16@5x5 - pool - 120 - 84 - out."""
    units: tuple[Unit, ...] = (
        Conv("conv1", 6, kernel=5, padding=2), Pool("pool1"),
        Conv("conv2", 16, kernel=5, padding=0), Pool("pool2"),
        Flatten("flatten"), Linear("fc1", 120, relu=True), Linear("fc2", 84, relu=True), Linear("fc3", num_classes),
    )
    return NetSpec(units, in_channels, input_size, "lenet5")


MODELS = {f.__name__: f for f in (resnet18, resnet34, resnet50, vgg11, vgg13, vgg16, vgg19, lenet5)}


def get_model_spec(name: str, **kwargs) -> NetSpec:
    """The NetSpec of a zoo model by name, e.g. ``get_model_spec("resnet18", num_classes=100)``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)}")
    return MODELS[name](**kwargs)
