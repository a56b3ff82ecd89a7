"""Gymnasium ids of :class:`ddc_env.env.DDCEnv`: each id is a preset of its arguments, and keyword
arguments given to ``gym.make`` override the preset, e.g. ``gym.make("DDC-ResNet18-CIFAR10", fidelity="zero")``.

Importing this module registers the ids (again importing or calling :func:`register_envs` is harmless).
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

import gymnasium as gym

ENTRY_POINT = "ddc_env.env:DDCEnv"
# LeNet-sized models take microseconds per image: one image's latency is all framework overhead, so MNIST ids
# time a batch of 256 and the latency ratio measures compute.
_MNIST = {"model_kwargs": {"in_channels": 1, "input_size": (28, 28)}, "latency_batch_size": 256}
PRESETS: MappingProxyType[str, dict[str, Any]] = MappingProxyType({
    "DDC-ResNet18-CIFAR10": {"model": "resnet18", "dataset": "cifar10"},
    "DDC-ResNet34-CIFAR10": {"model": "resnet34", "dataset": "cifar10"},
    "DDC-VGG11-CIFAR10": {"model": "vgg11", "dataset": "cifar10"},
    "DDC-VGG19-CIFAR10": {"model": "vgg19", "dataset": "cifar10"},
    "DDC-ResNet18-CIFAR100": {"model": "resnet18", "dataset": "cifar100"},
    # LeNet's 6- and 16-channel convs need a finer channel rounding than 8 to shrink at all
    "DDC-LeNet5-MNIST": {"model": "lenet5", "dataset": "mnist", "channel_round": 2, "min_channels": 2, **_MNIST},
    "DDC-VGG11-MNIST": {"model": "vgg11", "dataset": "mnist", **_MNIST},
    "DDC-ResNet18-CIFAR10-Vehicles": {"model": "resnet18", "dataset": "cifar10", "classes": "vehicles"},
    "DDC-ResNet18-CIFAR10-Animals": {"model": "resnet18", "dataset": "cifar10", "classes": "animals"},
})
ENV_IDS: tuple[str, ...] = tuple(PRESETS)


def register_envs() -> None:
    """Register every id of :data:`PRESETS` that gymnasium's registry does not hold yet."""
    for env_id, kwargs in PRESETS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs=dict(kwargs))


register_envs()
