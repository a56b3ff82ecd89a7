"""Channel spaces: which units write which set of feature maps, and which space feeds each unit.

A unit whose output tie is NEW starts a space named after it; a TIED unit (an identity residual block, a depthwise
conv) writes the space it reads, so every unit of a residual stage shares one channel set; a PASS unit (pool,
flatten) has no channels of its own. Inner spaces (a block's ``"mid"``) are named ``"<unit>/<inner>"``. These names
are the keys of :func:`channel_counts`, of importance scores and of the kept channels during inheritance.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .build import state_dict_shapes
from .spec import NetSpec, Unit
from .units import NEW, PASS

__all__ = ["INPUT", "Spaces", "channel_counts", "channel_dims", "channel_spaces", "inner_key", "spec_of_pruned",
           "stream_groups", "with_channels"]

INPUT = "<input>"  # the network's input channels


def inner_key(unit: str, inner: str) -> str:
    """The space key of inner space ``inner`` of ``unit`` (``"layer1.0/mid"``)."""
    return f"{unit}/{inner}"


@dataclass(frozen=True)
class Spaces:
    """``writes``: unit -> the space its output writes (units with channels only); ``members``: space -> its writers
    in network order; ``feeds``: unit -> (the space of its input, features per channel of that space)."""

    writes: Mapping[str, str]
    members: Mapping[str, tuple[str, ...]]
    feeds: Mapping[str, tuple[str, int]]


@functools.lru_cache(maxsize=512)
def channel_spaces(spec: NetSpec) -> Spaces:
    """The channel spaces of ``spec`` (see the module docstring)."""
    writes: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    feeds: dict[str, tuple[str, int]] = {}
    space, per_channel = INPUT, 1
    for row in spec.shapes():
        u = row.unit
        feeds[u.name] = (space, per_channel)
        tie = u.output_tie(row.inp)
        if tie == PASS:
            per_channel *= row.out[0] // row.inp[0]  # flatten: each channel becomes H*W features
            continue
        if tie == NEW:
            space, per_channel = u.name, 1
        writes[u.name] = space
        members.setdefault(space, []).append(u.name)
    return Spaces(writes, {k: tuple(v) for k, v in members.items()}, feeds)


def stream_groups(spec: NetSpec) -> dict[str, str]:
    """Map each unit with output channels to the unit that starts its space (itself unless it writes the space it
    reads, like an identity block, which joins its residual stream)."""
    return {u: s for u, s in channel_spaces(spec).writes.items() if s != INPUT}


def channel_counts(spec: NetSpec) -> dict[str, int]:
    """Channel count of every prunable channel space: spaces by the unit starting them, inner spaces
    (``'<block>/mid'``); the classifier's output is no space."""
    spaces, classifier = channel_spaces(spec), spec.units[-1].name
    counts: dict[str, int] = {}
    for u in spec.units:
        space = spaces.writes.get(u.name)
        if space is not None and space not in (INPUT, classifier):
            counts.setdefault(space, u.width)
        for inner in u.inner_spaces:
            counts[inner_key(u.name, inner)] = u.inner_width(inner)
    return counts


def resized_unit(u: Unit, spaces: Spaces, counts: Mapping[str, int]) -> Unit:
    """``u`` with its output space and inner spaces at ``counts`` (spaces absent from ``counts`` unchanged)."""
    inner = {s: counts[inner_key(u.name, s)] for s in u.inner_spaces if inner_key(u.name, s) in counts}
    return u.resized(counts.get(spaces.writes.get(u.name, "")), inner)


def with_channels(spec: NetSpec, counts: Mapping[str, int]) -> NetSpec:
    """``spec`` with the channel spaces in ``counts`` (keys as :func:`channel_counts`'s) set to exact counts."""
    spaces = channel_spaces(spec)
    return dataclasses.replace(spec, units=tuple(resized_unit(u, spaces, counts) for u in spec.units))


def channel_dims(spec: NetSpec) -> dict[tuple[str, int], tuple[str, int]]:
    """Every state-dict tensor dim a channel space of ``spec`` sizes: (key, dim) -> (space, entries per channel).

    Found without knowing any unit kind: ``spec`` and ``spec`` with one channel more in a space are built on the meta
    device and their state-dict shapes compared; a dim that grows belongs to that space, by as many entries as it
    grew (one, or H*W for a Linear reading flattened maps). A dim two spaces size is refused."""
    base = state_dict_shapes(spec)
    sized: dict[tuple[str, int], tuple[str, int]] = {}
    for space, count in channel_counts(spec).items():
        wider = state_dict_shapes(with_channels(spec, {space: count + 1}))
        if wider.keys() != base.keys():
            raise ValueError(f"widening channel space {space!r} changes the module's state-dict keys")
        for key, shape in base.items():
            for dim, (before, after) in enumerate(zip(shape, wider[key])):
                if before == after:
                    continue
                if (key, dim) in sized:
                    raise ValueError(f"{key} dim {dim} is sized by both {sized[key, dim][0]!r} and {space!r}")
                if before != count * (after - before):
                    raise ValueError(f"{key} dim {dim} ({before}) is not a multiple of channel space {space!r}")
                sized[key, dim] = (space, after - before)
    return sized


def spec_of_pruned(spec: NetSpec, state: Mapping[str, torch.Tensor]) -> NetSpec:
    """The spec of a module that was built from ``spec`` and then pruned in place (same state-dict keys, narrower
    tensors), e.g. by torch-pruning: ``with_channels(spec, counts)``, each channel space's count read off the tensor
    dims it sizes (:func:`channel_dims`).

    Raises ValueError unless every tensor dim of one space tells the same count (a residual stream pruned in one
    block but not the next cannot be a spec) and the result's module has exactly the pruned state dict's keys and
    shapes, so ``build(result).load_state_dict(state)`` (strict) always works."""
    counts: dict[str, int] = {}
    for (key, dim), (space, per_channel) in channel_dims(spec).items():
        size = state[key].shape[dim]
        if size % per_channel:
            raise ValueError(f"{key} dim {dim} has {size} entries, not a multiple of {per_channel} per channel")
        count = size // per_channel
        if counts.setdefault(space, count) != count:
            raise ValueError(f"channel space {space!r} is {counts[space]} channels wide in one tensor but {count} "
                             f"in {key} dim {dim}")
    pruned = with_channels(spec, counts)
    expected = state_dict_shapes(pruned)
    actual = {key: value.shape for key, value in state.items()}
    if expected != actual:
        wrong = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
        raise ValueError(f"the pruned module is no spec's: {wrong[0]} is {actual.get(wrong[0])}, its spec's "
                         f"{expected.get(wrong[0])} ({len(wrong)} tensor(s) differ)")
    return pruned
