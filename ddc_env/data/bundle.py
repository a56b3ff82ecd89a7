"""The top-level entry: :class:`DataConfig` -> :func:`load_data` -> :class:`DataBundle`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .catalog import KNOWN_DATASETS
from .errors import DataError
from .sources import load_source
from .splits import ValSplit, stratified_cap
from ..validate import check_bool
from .subsets import class_items, resolve_classes, select_classes


@dataclass(frozen=True)
class DataConfig:
    """What to load: dataset, class subset, validation split and optional caps.

    ``classes``: None = all; a named set ("vehicles", "animals", a CIFAR-100 superclass) or "cat,dog";
    or a tuple of class names / original indices, e.g. ("cat", "dog") or (3, 5).
    ``val_split``: "every" (within each class every ``val_every``-th training sample in file order) or
    "random" (seeded, stratified, ``val_fraction`` per class). ``max_train`` / ``max_val`` cap the splits,
    keeping class proportions (first samples per class in file order; by the seeded order for "random").
    """

    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    classes: str | tuple[str | int, ...] | None = None
    val_split: str = "every"
    val_every: int = 10
    val_fraction: float = 0.1
    seed: int = 0
    max_train: int | None = None
    max_val: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if not isinstance(self.dataset, str) or not self.dataset:
            raise DataError(f"dataset must be a dataset name, got {self.dataset!r}")
        check_bool(self.download, "download")
        if isinstance(self.classes, list):  # e.g. from YAML
            object.__setattr__(self, "classes", tuple(self.classes))
        class_items(self.classes)
        for name in ("max_train", "max_val"):
            cap = getattr(self, name)
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise DataError(f"{name} must be None or a positive integer; got {cap!r}")
        self.val_split_spec()  # validates the split fields

    def val_split_spec(self) -> ValSplit:
        """The validation split these settings describe."""
        return ValSplit(self.val_split, self.val_every, self.val_fraction, self.seed)


@dataclass(frozen=True)
class Split:
    """One part of a dataset in memory: images ``x`` uint8 (N, C, H, W), labels ``y`` int64 in
    0..num_classes-1, and ``index``: each sample's position in its source file (train file for train/val)."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        """A copy on ``device``."""
        return Split(self.x.to(device), self.y.to(device), self.index.to(device))


@dataclass(frozen=True)
class DataBundle:
    """Train / val / test splits of one (subset of a) dataset, with what a model needs to know about them.

    ``class_indices[k]`` is the original label of subset class ``k`` (slice a full teacher's logits with it).
    ``mean`` / ``std`` are the dataset's per-channel constants (computed from the whole training file for
    datasets without known constants), the same for every subset.
    """

    config: DataConfig
    train: Split
    val: Split
    test: Split
    class_names: tuple[str, ...]
    class_indices: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    origin: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.x.shape[2]), int(self.train.x.shape[3])

    def describe(self) -> dict[str, Any]:
        """A stable, JSON-ready description of (dataset, subset, split, caps) and the resulting sizes."""
        return {
            "dataset": self.config.dataset,
            "classes": list(self.class_indices),
            "class_names": list(self.class_names),
            "val_split": self.config.val_split_spec().describe(),
            "max_train": self.config.max_train,
            "max_val": self.config.max_val,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "image_shape": [self.in_channels, *self.image_size],
        }

    def fingerprint(self) -> str:
        """sha256 hex digest of :meth:`describe` (canonical JSON): a cache key for anything data-dependent."""
        blob = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to(self, device: torch.device | str) -> DataBundle:
        """A copy with all three splits on ``device``."""
        return dataclasses.replace(self, train=self.train.to(device), val=self.val.to(device),
                                   test=self.test.to(device))


def channel_stats(x: torch.Tensor, chunk: int = 1024) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NCHW images in [0, 1] units, accumulated in float64 by chunks."""
    n, c, h, w = x.shape
    s = torch.zeros(c, dtype=torch.float64)
    ss = torch.zeros(c, dtype=torch.float64)
    for i in range(0, n, chunk):
        part = x[i:i + chunk].to(torch.float64)
        s += part.sum(dim=(0, 2, 3))
        ss += part.square().sum(dim=(0, 2, 3))
    count = n * h * w
    mean = s / count / 255.0
    std = (ss / count / 255.0**2 - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _take(x: torch.Tensor, y: np.ndarray, pos: np.ndarray, class_indices: tuple[int, ...],
          cap: int | None, keys: np.ndarray | None) -> Split:
    """The samples at ``pos`` whose class is in the subset, labels remapped, optionally capped."""
    keep, labels = select_classes(y[pos], class_indices)
    pos = pos[keep]
    if cap is not None and cap < len(pos):
        sel = stratified_cap(labels, cap, None if keys is None else keys[pos])
        pos, labels = pos[sel], labels[sel]
    index = torch.from_numpy(pos.astype(np.int64))
    return Split(x[index], torch.from_numpy(labels), index)


def load_data(cfg: DataConfig | None = None, **overrides: Any) -> DataBundle:
    """Load, split, subset and cap a dataset as uint8 tensors in memory (``overrides`` replace cfg fields)."""
    cfg = dataclasses.replace(cfg or DataConfig(), **overrides)
    src = load_source(cfg.dataset, cfg.data_dir, cfg.download)
    class_indices = resolve_classes(cfg.classes, src.class_names, src.groups)
    spec = cfg.val_split_spec()
    y_train = src.y_train.numpy()
    train_pos, val_pos = spec.indices(y_train)
    keys = spec.keys(len(y_train))
    train = _take(src.x_train, y_train, train_pos, class_indices, cfg.max_train, keys)
    val = _take(src.x_train, y_train, val_pos, class_indices, cfg.max_val, keys)
    test = _take(src.x_test, src.y_test.numpy(), np.arange(len(src.y_test)), class_indices, None, None)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"{cfg.dataset}: the split leaves {len(train)} training and {len(val)} validation samples "
                        f"for classes {list(class_indices)}; each class needs enough samples for both")
    known = KNOWN_DATASETS.get(cfg.dataset)
    if known is not None and len(known.mean) == src.x_train.shape[1]:
        mean, std = known.mean, known.std
    else:
        mean, std = channel_stats(src.x_train)
    return DataBundle(cfg, train, val, test, tuple(src.class_names[i] for i in class_indices), class_indices,
                      mean, std, src.origin)
