"""LeNet-5 (with BatchNorm and max-pool), for MNIST-sized inputs."""
from __future__ import annotations

from ..arch.spec import Conv, Flatten, Linear, NetSpec, Pool, Unit
from .registry import register_model

__all__ = ["lenet5"]


@register_model()
def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: tuple[int, int] = (28, 28)) -> NetSpec:
    """LeNet-5 with BatchNorm and max-pool: conv 6@5x5 (same) - pool - conv 16@5x5 - pool - 120 - 84 - out."""
    units: tuple[Unit, ...] = (
        Conv("conv1", 6, kernel=5, padding=2), Pool("pool1"),
        Conv("conv2", 16, kernel=5, padding=0), Pool("pool2"),
        Flatten("flatten"), Linear("fc1", 120, relu=True), Linear("fc2", 84, relu=True), Linear("fc3", num_classes),
    )
    return NetSpec(units, in_channels, input_size, "lenet5")
