"""Class subsets ("data-driven" compression): resolving a class spec and remapping labels."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from .catalog import NAMED_CLASS_SETS
from .errors import DataError

ClassSpec = str | Sequence[str | int] | None
"""None = all classes; a named set ("vehicles", a CIFAR-100 superclass), "cat,dog" or "3,5"; or names/indices."""


def class_items(spec: ClassSpec) -> list[str | int] | None:
    """The class names and indices ``spec`` lists (None: all classes; a str: one named set or comma-separated names
    and indices, digits read as indices unless a class has that name), checked for shape only: which names exist
    depends on the dataset (:func:`resolve_classes`)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        items: list[str | int] = [s.strip() for s in spec.split(",") if s.strip()]
    elif isinstance(spec, Sequence) and all(
            isinstance(c, str) or (isinstance(c, numbers.Integral) and not isinstance(c, bool)) for c in spec):
        items = list(spec)
    else:
        raise DataError(f"classes must be None, a string or a list of class names or indices, got {spec!r}")
    if not items:
        raise DataError("classes is empty; give at least one class (or None for all classes)")
    return items


def named_sets(class_names: Sequence[str],
               groups: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """The named class sets available for a dataset with these class names, as label indices.

    A catalog set applies when all its members are class names of the dataset; ``groups`` (derived from the
    data, e.g. CIFAR-100 superclasses from the raw pickles) take precedence.
    """
    index = {n: i for i, n in enumerate(class_names)}
    sets = {name: tuple(index[m] for m in members)
            for name, members in NAMED_CLASS_SETS.items() if all(m in index for m in members)}
    sets.update(groups or {})
    return sets


def resolve_classes(spec: ClassSpec, class_names: Sequence[str],
                    groups: Mapping[str, tuple[int, ...]] | None = None) -> tuple[int, ...]:
    """Original label indices of the subset ``spec``, in the order given (None -> all classes)."""
    k = len(class_names)
    items = class_items(spec)
    if items is None:
        return tuple(range(k))
    sets = named_sets(class_names, groups)
    if isinstance(spec, str) and spec in sets:
        return sets[spec]
    index = {n: i for i, n in enumerate(class_names)}
    out: list[int] = []
    for item in items:
        if isinstance(spec, str) and item not in index and item.isdigit():  # "3,5": indices in a string
            item = int(item)
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            if not 0 <= int(item) < k:
                raise DataError(f"class index {item} is out of range; allowed: 0..{k - 1}")
            out.append(int(item))
        elif isinstance(item, str) and item in index:
            out.append(index[item])
        else:
            raise DataError(f"unknown class {item!r}; allowed class names: {', '.join(class_names)}; "
                            f"indices 0..{k - 1}; named sets: {', '.join(sets) or 'none for this dataset'}")
    if len(set(out)) != len(out):
        raise DataError(f"classes {list(items)} name a class twice")
    return tuple(out)


def select_classes(y: np.ndarray, class_indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(positions of samples in the subset, their labels remapped to 0..k-1 in ``class_indices`` order)."""
    lut = np.full(int(max(int(y.max(initial=0)), *class_indices)) + 1, -1, np.int64)
    lut[np.asarray(class_indices, np.int64)] = np.arange(len(class_indices))
    new = lut[y]
    keep = np.flatnonzero(new >= 0)
    return keep, new[keep]
