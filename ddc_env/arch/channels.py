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

from .spec import NetSpec, Unit
from .units import NEW, PASS

__all__ = ["INPUT", "Spaces", "channel_counts", "channel_spaces", "inner_key", "stream_groups", "with_channels"]

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
