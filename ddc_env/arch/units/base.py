"""What every unit kind is: a frozen dataclass that owns its costs, module, channel interface, decisions, weight
inheritance, importance scores and observation features, registered by name with :func:`register_unit`.

Generic code (:mod:`ddc_env.arch.spec`, ``build``, ``inherit``, ``actions``, the env's observation, the surrogate)
asks a unit through these methods and never looks at its class. A new unit kind is one file: a subclass of
:class:`Unit` decorated with ``@register_unit``, imported by ``ddc_env/arch/units/__init__.py``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

__all__ = ["FORMS", "NEW", "PASS", "TIED", "UNIT_TYPES", "DecisionContext", "Form", "Ports", "ResidualStream",
           "SpecError", "Unit", "UnitDecision", "conv_cost", "conv_out", "copy_bn", "copy_conv", "l1_out",
           "register_form", "register_unit", "select_inputs", "summed", "top_channels"]

NEW, TIED, PASS = "new", "tied", "pass"  # a unit's output channels: its own space, its input's space, no channels


class SpecError(ValueError):
    """An invalid network spec (shapes do not fit, unknown unit type, malformed JSON)."""


@dataclass(frozen=True)
class DecisionContext:
    """What a unit needs to know about its place in the network to say which decisions it offers."""

    inp: tuple[int, ...]
    out: tuple[int, ...]
    first: bool  # the first unit with channels of its own (never removed)
    classifier: bool  # the last unit (never removed or narrowed)
    shared: bool  # its output space is written by other units too (a residual stream)


@dataclass(frozen=True)
class UnitDecision:
    """What a unit offers: removal, a width (of its output space ``""`` or an inner space such as ``"mid"``)."""

    removable: bool
    space: str | None  # the space its width scales; None: no width of its own
    channels: int = 0  # the teacher's channel count of that space


@dataclass(frozen=True)
class Ports:
    """The teacher channels a student unit keeps, for weight inheritance: ``out`` of its output space, ``inner`` of
    its inner spaces, and its inputs (``inputs(w)`` slices a weight's input dim, following the producer)."""

    out: torch.Tensor | None
    inner: Mapping[str, torch.Tensor]
    inputs: Callable[[torch.Tensor], torch.Tensor]
    in_idx: torch.Tensor | None  # the kept input channels, None when the producer is not the teacher's own


U = TypeVar("U", bound="Unit")


@dataclass(frozen=True)
class Unit:
    """Base of every unit kind (a frozen dataclass with a unique ``name``)."""

    name: str
    type: ClassVar[str] = ""
    obs_kind: ClassVar[str] = ""  # the observation's unit-kind one-hot: "conv", "block" or "linear" ("" for none)
    inner_spaces: ClassVar[tuple[str, ...]] = ()  # channel spaces inside the unit (e.g. a block's "mid")
    defaults_omitted: ClassVar[tuple[str, ...]] = ()  # fields left out of JSON at their default (keeps old hashes)

    # -- JSON --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"type": ..., **fields}``; fields named in ``defaults_omitted`` only when not at their default."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in self.defaults_omitted or getattr(self, f.name) != f.default}
        return {"type": self.type, **fields}

    # -- shapes and costs --------------------------------------------------------------------------------
    def infer(self, inp: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        """Output shape, params and FLOPs (2 per multiply-accumulate) on a per-sample input ``inp``; SpecError
        when the unit does not fit it."""
        raise NotImplementedError

    def maps_input(self, inp: tuple[int, ...]) -> tuple[int, int, int]:
        """``inp`` as (C, H, W); SpecError when it is a vector."""
        if len(inp) != 3:
            raise SpecError(f"{self.name}: {self.type} needs a (C, H, W) input, got {inp}")
        return inp  # type: ignore[return-value]

    # -- module ------------------------------------------------------------------------------------------
    def module(self, c_in: int) -> nn.Module:
        """The (randomly initialised) torch module of this unit taking ``c_in`` input channels or features."""
        raise NotImplementedError

    # -- channel interface -------------------------------------------------------------------------------
    def output_tie(self, inp: tuple[int, ...]) -> str:
        """NEW: its output channels are a space of its own; TIED: it writes the space it reads (a residual add, a
        depthwise conv); PASS: it has no channels of its own and passes its input's on (pools, flatten)."""
        return PASS

    @property
    def width(self) -> int:
        """Its output channels (or features)."""
        raise NotImplementedError

    def inner_width(self, space: str) -> int:
        """The channel count of inner space ``space``."""
        raise KeyError(space)

    def resized(self: U, out: int | None = None, inner: Mapping[str, int] | None = None) -> U:
        """This unit with ``out`` output channels and the ``inner`` spaces' counts (None / absent: unchanged)."""
        return self

    # -- decisions ---------------------------------------------------------------------------------------
    def decision(self, ctx: DecisionContext) -> UnitDecision | None:
        """What this unit offers in its place (None: nothing)."""
        return None

    # -- weights -----------------------------------------------------------------------------------------
    def inherit(self, dst: nn.Module, src: nn.Module, ports: Ports) -> None:
        """Copy the kept teacher weights of ``src`` (the teacher's module of this unit's name) into ``dst``."""

    def output_order(self, kept: torch.Tensor, teacher: nn.Module) -> torch.Tensor:
        """The kept teacher channels of its output space in the order this unit writes them (``teacher``: the
        teacher's module of this unit's name); the consumer's inputs follow that order."""
        return kept

    def importance(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """L1 norm per channel of what this unit writes: ``""`` its output space, inner spaces by name."""
        return {}

    def activation_points(self, module: nn.Module) -> dict[str, list[nn.Module]]:
        """Submodules whose outputs carry each space's channels (``""`` output, inner by name), e.g. for a Taylor
        criterion (activation x gradient)."""
        return {}

    def stale_batchnorms(self, module: nn.Module, teacher: Unit) -> list[nn.Module]:
        """The BatchNorms of this changed unit whose statistics no longer hold although its input is the teacher's
        (kept filters of a narrower conv see the teacher's inputs; what follows a narrower inner space does not)."""
        return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    # -- observation -------------------------------------------------------------------------------------
    def obs_features(self) -> dict[str, float]:
        """Observation features this unit sets (names of ``ddc_env.env.FEATURES``, e.g. kernel and stride)."""
        return {}


UNIT_TYPES: dict[str, type[Unit]] = {}


def register_unit(cls: type[U]) -> type[U]:
    """Class decorator: register a unit kind under its ``type`` (for JSON and every generic dispatch)."""
    if not cls.type or cls.type in UNIT_TYPES:
        raise ValueError(f"unit type {cls.type!r} is empty or registered twice")
    UNIT_TYPES[cls.type] = cls
    return cls


@dataclass(frozen=True)
class Form:
    """A way to keep a unit in another form (a 1x1 kernel, a Fire module): which units it applies to, and the unit it
    turns one into; ``keep`` is the :class:`~ddc_env.arch.codec.Keep` choice asking for it."""

    name: str
    offered: Callable[[Unit, DecisionContext], bool]
    apply: Callable[[Unit, Any], Unit]


FORMS: dict[str, Form] = {}


def register_form(form: Form) -> Form:
    """Register a form under its name (its unit kind's file does, beside the unit)."""
    if form.name in FORMS:
        raise ValueError(f"form {form.name!r} registered twice")
    FORMS[form.name] = form
    return form


class ResidualStream:
    """Methods of a residual unit kind (fields ``name``, ``out_channels``, ``stride``, ``shortcut``): with the identity
    shortcut it writes the stream it reads, else it starts one."""

    name: str
    out_channels: int
    stride: int
    shortcut: str

    def check_shortcut(self, c_in: int, allowed: tuple[str, ...]) -> None:
        """SpecError unless the shortcut is one of ``allowed`` and an identity shortcut fits the input."""
        if self.shortcut not in allowed:
            raise SpecError(f"{self.name}: shortcut must be one of {allowed}, got {self.shortcut!r}")
        if self.shortcut == "identity" and (self.stride != 1 or c_in != self.out_channels):
            raise SpecError(f"{self.name}: an identity shortcut needs stride 1 and {c_in} == {self.out_channels} "
                            f"channels")

    def output_tie(self, inp: tuple[int, ...]) -> str:
        return TIED if self.shortcut == "identity" else NEW

    @property
    def width(self) -> int:
        return self.out_channels


# ------------------------------------------------------------------------------------ shared arithmetic


def summed(out: tuple[int, ...], costs: list[tuple[int, int]]) -> tuple[tuple[int, ...], int, int]:
    """(output shape, params, FLOPs) of a unit made of parts with (params, FLOPs) ``costs``."""
    return out, sum(p for p, _ in costs), sum(f for _, f in costs)



def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output size of a convolution or pooling along one dimension."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_cost(c_in: int, c_out: int, k: int, out_hw: int, bn: bool, groups: int = 1) -> tuple[int, int]:
    """Params and FLOPs of a kxk convolution (+ BatchNorm, else a bias) with ``groups`` groups."""
    per_group = c_in // groups
    params = per_group * c_out * k * k + (2 * c_out if bn else c_out)
    return params, 2 * per_group * c_out * k * k * out_hw


# ------------------------------------------------------------------------------------ shared weight copying


def l1_out(w: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter (dim 0) of a weight tensor."""
    return w.detach().abs().flatten(1).sum(1)


def top_channels(importance: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` most important entries, in ascending index order."""
    if n >= importance.numel():
        return torch.arange(importance.numel())
    return torch.topk(importance, n).indices.sort().values


def select_inputs(w: torch.Tensor, per_channel: int, idx: torch.Tensor | None, n_in: int) -> torch.Tensor:
    """Slice a weight's input dim (dim 1) to ``n_in`` channels: by ``idx`` when the producer is the teacher's own,
    else by the input slices' L1 norm (zero-filled if more are needed than exist)."""
    shape = w.shape
    w = w.reshape(shape[0], shape[1] // per_channel, per_channel, *shape[2:])
    if idx is None:
        importance = w.detach().abs().transpose(0, 1).flatten(1).sum(1)
        idx = top_channels(importance, min(n_in, w.shape[1]))
    w = w[:, idx]
    if w.shape[1] < n_in:
        pad = w.new_zeros(w.shape[0], n_in - w.shape[1], *w.shape[2:])
        w = torch.cat([w, pad], dim=1)
    return w.reshape(shape[0], n_in * per_channel, *shape[2:])


def copy_conv(dst: nn.Conv2d, src: nn.Conv2d, out_idx: torch.Tensor, in_w: torch.Tensor | None = None) -> None:
    """``dst``'s weight from ``src``'s kept output filters (``in_w``: the weight with inputs already selected); a
    smaller kernel keeps the centre taps."""
    w = (src.weight if in_w is None else in_w)[out_idx]
    if dst.kernel_size != src.kernel_size:
        k, c = dst.kernel_size[0], src.kernel_size[0] // 2
        w = w[:, :, c - k // 2: c + k // 2 + 1, c - k // 2: c + k // 2 + 1]
    dst.weight.copy_(w)
    if dst.bias is not None:
        dst.bias.copy_(src.bias[out_idx])


def copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    """``dst``'s affine parameters and statistics from ``src``'s channels ``idx``."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[idx])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
