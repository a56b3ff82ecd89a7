"""The model registry, like torchvision's: a teacher architecture is one function returning a NetSpec, registered
with ``@register_model``; ``get_model(name, **kwargs)`` builds its spec, ``list_models()`` names them.

Example::

    @register_model(torchvision_key=my_layout)   # optional: how torchvision names its weights (for imports)
    def mynet(num_classes: int = 10, in_channels: int = 3, input_size: tuple[int, int] = (32, 32)) -> NetSpec:
        ...
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from ..arch.spec import NetSpec, Unit

__all__ = ["MODELS", "ModelEntry", "TorchvisionKey", "get_model", "get_model_entry", "get_model_spec", "list_models",
           "register_model"]

TorchvisionKey = Callable[[Unit, str], str]  # (unit, our parameter path inside its module) -> torchvision's key
Builder = TypeVar("Builder", bound=Callable[..., NetSpec])


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and, when torchvision has the architecture, how torchvision names its weights
    (``torchvision_key(unit, rest)``)."""

    name: str
    builder: Callable[..., NetSpec]
    torchvision_key: TorchvisionKey | None = None


_REGISTRY: dict[str, ModelEntry] = {}
_BUILDERS: dict[str, Callable[..., NetSpec]] = {}
MODELS: MappingProxyType[str, Callable[..., NetSpec]] = MappingProxyType(_BUILDERS)  # name -> builder, read-only


def register_model(name: str | None = None, *, torchvision_key: TorchvisionKey | None = None
                   ) -> Callable[[Builder], Builder]:
    """Decorator: register a builder under ``name`` (default: the function's name)."""
    def register(fn: Builder) -> Builder:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is registered twice")
        _REGISTRY[key] = ModelEntry(key, fn, torchvision_key)
        _BUILDERS[key] = fn
        return fn
    return register


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; a ValueError lists the models."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return _REGISTRY[name]


def get_model(name: str, **kwargs: Any) -> NetSpec:
    """The NetSpec of a registered model, e.g. ``get_model("resnet18", num_classes=100)``."""
    return get_model_entry(name).builder(**kwargs)


get_model_spec = get_model  # the name used before the registry
