"""Config plumbing of the lab's jobs: YAML files (packaged or on disk), ``key=value`` overrides with dotted keys (of
a config file, or of an env id's arguments), and plain-data conversion for what run folders write."""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import registration
from ..env import EnvConfig
from ..twins import BenchConfig

__all__ = ["config_names", "env_arguments", "parse_scalar", "plain", "read_yaml", "resolve_config",
           "resolve_config_dir", "set_dotted"]

CONFIG_PACKAGE = "ddc_env.configs"


def config_names(kind: str = "search") -> list[str]:
    """The names of the configs shipped in the package: search configs, or ``kind="baselines"``."""
    root = importlib.resources.files(CONFIG_PACKAGE)
    if kind == "baselines":
        root = root / "baselines"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_config(name_or_path: str | Path, kind: str = "search") -> Path:
    """A config file: a path to a YAML file, or the name of a config shipped in the package
    (``lenet5_mnist_random``; ``kind="baselines"`` for ``configs/baselines/``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml")
    root = importlib.resources.files(CONFIG_PACKAGE)
    shipped = (root / "baselines" if kind == "baselines" else root) / f"{name}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise ValueError(f"no config file {name_or_path}, and no packaged {kind} config named {name!r}; packaged: "
                     f"{', '.join(config_names(kind))}")


def resolve_config_dir(name_or_path: str | Path) -> Path:
    """A folder of configs: a path to a folder, or a folder of the configs shipped in the package
    (``bench/lenet5_mnist``)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = importlib.resources.files(CONFIG_PACKAGE).joinpath(*path.parts)
    if shipped.is_dir():
        return Path(str(shipped))
    bench = importlib.resources.files(CONFIG_PACKAGE) / "bench"
    raise ValueError(f"no config folder {name_or_path}, and no packaged one by that name; packaged benchmark configs: "
                     f"{', '.join(sorted('bench/' + p.name for p in bench.iterdir() if p.is_dir()))}")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_scalar(text: str) -> Any:
    """A ``--set`` value as a YAML scalar (or flow collection): ``3`` -> 3, ``1e-3`` -> 0.001, ``[1, 2]``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse the value {text!r}: {' '.join(str(e).split())}") from None


def read_yaml(path: str | Path, kind: str = "search") -> dict[str, Any]:
    """The mapping in a YAML file (a path or a packaged config's name, see :func:`resolve_config`); a missing
    file or a non-mapping raises a ValueError."""
    path = resolve_config(path, kind)
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def set_dotted(data: dict[str, Any], overrides: Sequence[str], allowed: Sequence[str],
               what: str = "config") -> dict[str, Any]:
    """A deep copy of ``data`` with each ``key=value`` applied in order: dotted keys reach into mappings (created
    when missing), values parse as YAML scalars, the first key must be one of ``allowed``."""
    out = json.loads(json.dumps(data, default=str))  # a deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ValueError(f"an override is key=value with a dotted key (e.g. env_kwargs.fidelity=smoke), "
                             f"got {item!r}")
        if path[0] not in allowed:
            raise ValueError(f"unknown {what} key {path[0]!r} in override {item!r}; allowed: {list(allowed)}")
        node = out
        for depth, name in enumerate(path[:-1]):
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            if not isinstance(child, dict):
                raise ValueError(f"cannot set {key}: {'.'.join(path[:depth + 1])} is {child!r}, not a mapping")
            node = child
        node[path[-1]] = parse_scalar(text)
    return out


def env_arguments(env_id: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments ``key=value`` overrides give an env id (dotted keys reach into mappings, values parse as
    YAML scalars): an argument of the live env's :class:`~ddc_env.env.EnvConfig`, or of a twin's
    :class:`~ddc_env.twins.BenchConfig`; an unknown name raises a ValueError naming the allowed ones."""
    config = EnvConfig if registration.is_live(env_id) else BenchConfig
    return set_dotted({}, overrides, [f.name for f in dataclasses.fields(config)], "env argument")


def plain(value: Any) -> Any:
    """``value`` as YAML/JSON-friendly plain data (tuples as lists, numpy scalars as Python numbers)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
