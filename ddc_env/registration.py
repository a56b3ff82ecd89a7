"""Gymnasium ids of the DDC envs. Each id is a preset of its env's arguments, and keyword arguments given to
``gym.make`` override the preset, e.g. ``gym.make("DDC-ResNet18-CIFAR10", fidelity="zero")``.

- ``DDC-<Teacher>-<Data>-v0``: the live :class:`ddc_env.env.DDCEnv` (students are trained and measured);
- ``DDC-Bench-<Teacher>-<Data>-v0``: its benchmark twins (:class:`ddc_env.twins.DDCBenchEnv`): the same spaces,
  masks, observations, rewards and info keys, scored from a table or a surrogate shipped in the package.

The ids carry Gymnasium's version suffix; the names without it (``DDC-ResNet18-CIFAR10``) resolve to the latest
version. Importing this module registers the ids (again importing or calling :func:`register_envs` is harmless).
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import gymnasium as gym

__all__ = ["BENCH_IDS", "ENTRY_POINT", "ENV_IDS", "LIVE_IDS", "PRESETS", "TWIN_ENTRY_POINT", "env_config", "is_live",
           "register_envs", "resolve_id"]

ENTRY_POINT = "ddc_env.env:DDCEnv"
TWIN_ENTRY_POINT = "ddc_env.twins:DDCBenchEnv"
VERSION = "v0"
# LeNet-sized models take microseconds per image: one image's latency is all framework overhead, so MNIST ids
# time a batch of 256 and the latency ratio measures compute.
_MNIST = {"model_kwargs": {"in_channels": 1, "input_size": (28, 28)}, "latency_batch_size": 256}
PRESETS: MappingProxyType[str, dict[str, Any]] = MappingProxyType({
    "DDC-ResNet18-CIFAR10": {"model": "resnet18", "dataset": "cifar10"},
    "DDC-ResNet34-CIFAR10": {"model": "resnet34", "dataset": "cifar10"},
    "DDC-VGG11-CIFAR10": {"model": "vgg11", "dataset": "cifar10"},
    "DDC-VGG16-CIFAR10": {"model": "vgg16", "dataset": "cifar10"},
    "DDC-VGG19-CIFAR10": {"model": "vgg19", "dataset": "cifar10"},
    "DDC-MobileNetV2-CIFAR10": {"model": "mobilenet_v2", "dataset": "cifar10"},
    "DDC-ResNet18-CIFAR100": {"model": "resnet18", "dataset": "cifar100"},
    # LeNet's 6- and 16-channel convs need a finer channel rounding than 8 to shrink at all; its teacher trains 8
    # epochs (on dataset="mnist_sample" that is the teacher the package ships with the twin's table)
    "DDC-LeNet5-MNIST": {"model": "lenet5", "dataset": "mnist", "channel_round": 2, "min_channels": 2,
                         "teacher_epochs": 8, **_MNIST},
    "DDC-VGG11-MNIST": {"model": "vgg11", "dataset": "mnist", **_MNIST},
    "DDC-ResNet18-CIFAR10-Vehicles": {"model": "resnet18", "dataset": "cifar10", "classes": "vehicles"},
    "DDC-ResNet18-CIFAR10-Animals": {"model": "resnet18", "dataset": "cifar10", "classes": "animals"},
})
# the twins: the table each one scores from, and how
BENCH_PRESETS: MappingProxyType[str, dict[str, Any]] = MappingProxyType({
    "DDC-Bench-LeNet5-MNIST": {"table": "lenet5_mnist", "backend": "table"},
    "DDC-Bench-ResNet18-CIFAR10": {"table": "resnet18_cifar10", "backend": "surrogate"},
})
LIVE_IDS: tuple[str, ...] = tuple(f"{name}-{VERSION}" for name in PRESETS)
BENCH_IDS: tuple[str, ...] = tuple(f"{name}-{VERSION}" for name in BENCH_PRESETS)
ENV_IDS: tuple[str, ...] = LIVE_IDS + BENCH_IDS


def register_envs() -> None:
    """Register every id that gymnasium's registry does not hold yet."""
    for presets, entry_point in ((PRESETS, ENTRY_POINT), (BENCH_PRESETS, TWIN_ENTRY_POINT)):
        for name, kwargs in presets.items():
            env_id = f"{name}-{VERSION}"
            if env_id not in gym.registry:
                gym.register(id=env_id, entry_point=entry_point, kwargs=dict(kwargs))
    # gymnasium resolves an id without version to the latest one with a warning; our documented names have none
    warnings.filterwarnings("ignore", message=r".*Using the latest versioned environment `DDC-")


def resolve_id(env_id: str) -> str:
    """The registered id ``env_id`` names: itself, or, without a version suffix, its latest version; a
    ``"module:"`` prefix (``"ddc_env:DDC-LeNet5-MNIST"``) is dropped."""
    if not isinstance(env_id, str):
        raise ValueError(f"env_id must be a string, got {env_id!r}")
    name = env_id.split(":", 1)[1] if ":" in env_id else env_id
    if name not in gym.registry:
        ns, base, version = gym.envs.registration.parse_env_id(name)
        latest = gym.envs.registration.find_highest_version(ns, base) if version is None else None
        if latest is None:
            raise ValueError(f"unknown env_id {env_id!r}; the DDC ids: {', '.join(ENV_IDS)} (the version suffix may "
                             f"be left out)")
        name = gym.envs.registration.get_env_id(ns, base, latest)
    return name


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    return gym.registry[resolve_id(env_id)]


def is_live(env_id: str) -> bool:
    """Whether ``env_id`` is a live DDC env (students trained for real), not a benchmark twin."""
    return _spec(env_id).entry_point == ENTRY_POINT


def env_config(env_id: str, kwargs: Mapping[str, Any]) -> Any:
    """The checked config ``gym.make(env_id, **kwargs)`` would build (an ``EnvConfig`` or a twin's
    ``BenchConfig``), without loading anything; a ValueError names a bad id or argument."""
    spec = _spec(env_id)
    if spec.entry_point not in (ENTRY_POINT, TWIN_ENTRY_POINT):
        raise ValueError(f"{env_id!r} is not a DDC env")
    env_class = gym.envs.registration.load_env_creator(spec.entry_point)  # by name, as gym.make does
    return env_class.make_config(**{**spec.kwargs, **kwargs})


register_envs()
