"""Datasets as uint8 tensors in memory: sources, validation splits, class subsets, on-device batching.

Typical use::

    bundle = load_data(DataConfig(dataset="cifar10_jpeg", classes="vehicles"))
    gen = torch.Generator().manual_seed(0)
    for xb, yb, idx in iterate_batches(bundle.train.x, bundle.train.y, 256, shuffle=True, generator=gen):
        xb = normalize(augment(xb, gen), bundle.mean, bundle.std)
"""

from .augment import PAD_MODES, augment, crop_flip, normalize, sample_crop_flip
from .batching import batch_indices, iterate_batches
from .bundle import DataBundle, DataConfig, Split, channel_stats, load_data
from .catalog import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
    CIFAR100_SUPERCLASSES,
    DIGIT_CLASSES,
    DIGIT_DATASETS,
    KNOWN_DATASETS,
    NAMED_CLASS_SETS,
    PACKAGED_DATASETS,
    TORCHVISION_DATASETS,
    DatasetInfo,
    flips,
)
from .errors import DataError
from .sources import SourceData, decoded_cache_dir, load_source, npz_paths, resolve_data_dir
from .splits import SPLIT_METHODS, ValSplit, class_rank, stratified_cap
from .subsets import ClassSpec, named_sets, resolve_classes, select_classes

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR100_FINE_CLASSES",
    "CIFAR100_SUPERCLASSES",
    "DIGIT_CLASSES",
    "DIGIT_DATASETS",
    "KNOWN_DATASETS",
    "NAMED_CLASS_SETS",
    "PACKAGED_DATASETS",
    "PAD_MODES",
    "SPLIT_METHODS",
    "TORCHVISION_DATASETS",
    "ClassSpec",
    "DataBundle",
    "DataConfig",
    "DataError",
    "DatasetInfo",
    "SourceData",
    "Split",
    "ValSplit",
    "augment",
    "batch_indices",
    "channel_stats",
    "class_rank",
    "crop_flip",
    "decoded_cache_dir",
    "flips",
    "iterate_batches",
    "load_data",
    "load_source",
    "named_sets",
    "normalize",
    "npz_paths",
    "resolve_classes",
    "resolve_data_dir",
    "sample_crop_flip",
    "select_classes",
    "stratified_cap",
]
