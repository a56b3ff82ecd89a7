"""The action codec: the one owner of how a task's choices are laid out as actions and recorded.

Action index -> choice: ``0`` removes the unit; ``1..K`` keep it at ``width_choices[k - 1]``; then, for each form the
task offers (a 1x1 kernel, a Fire module), the same K widths in that form. The codec also gives each decision's mask
(which actions it allows), the masks of each pass of the env, the nearest allowed action to a forbidden one, labels,
the action of a continuous keep ratio (AMC's mode), and a lossless text form of choices (``encode``/``decode``) that
rebuilds the exact student: ``"remove"``, ``"0.5"``, ``"0.5:kernel_1x1"``, ``"0.5:fire=0.25"``.

Example::

    codec = ActionCodec((0.25, 0.5, 1.0), forms=(("kernel_1x1", None),))
    codec.choices          # ('remove', 0.25, 0.5, 1.0, Keep(0.25, kernel=1), Keep(0.5, kernel=1), Keep(1.0, kernel=1))
    codec.decode(codec.encode({"conv2": Keep(0.5, kernel=1)}))   # the same choices back
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .actions import REMOVE, ActionError, Choice, Decision, Keep

__all__ = ["PASSES", "ActionCodec", "choices_from_widths", "describe", "parse", "token", "width_of"]

PASSES = ("joint", "removal", "shrink")  # joint: every option; removal: remove or keep; shrink: no removal


@dataclass(frozen=True)
class ActionCodec:
    """The action layout of a task (see the module docstring). ``forms``: (form name, its parameter) per form
    offered, in action order, e.g. ``(("kernel_1x1", None), ("fire", 0.25))``."""

    width_choices: tuple[float, ...]
    forms: tuple[tuple[str, float | None], ...] = ()

    @cached_property
    def choices(self) -> tuple[Choice, ...]:
        """Action index -> choice."""
        formed = [Keep(w, form=form, param=param) for form, param in self.forms for w in self.width_choices]
        return (REMOVE, *self.width_choices, *formed)

    @cached_property
    def widths(self) -> tuple[float, ...]:
        """Action index -> the width it keeps (0.0 for "remove")."""
        return tuple(width_of(c) for c in self.choices)

    @property
    def keep_action(self) -> int:
        """The action "keep at width 1.0", allowed everywhere."""
        return 1 + self.width_choices.index(1.0)

    def __len__(self) -> int:
        return len(self.choices)

    def index(self, choice: Choice) -> int:
        """The action of a choice ("remove", a width of ``width_choices`` or a Keep); ValueError if none."""
        if isinstance(choice, Keep) and choice.form is None:
            choice = choice.width
        if not isinstance(choice, (str, Keep)):
            choice = float(choice)
        if choice not in self.choices:
            raise ValueError(f"{choice!r} is not an action of this env; actions: {list(self.choices)}")
        return self.choices.index(choice)

    def layout(self) -> str:
        """The layout in words, for error messages and docs."""
        k = len(self.width_choices)
        parts = ["0 = remove", f"1..{k} = widths {list(self.width_choices)}"]
        parts += [f"{1 + k * i}..{k * (i + 1)} = the same widths, {form}" for i, (form, _) in enumerate(self.forms, 1)]
        return "; ".join(parts)

    # -- masks -------------------------------------------------------------------------------------------
    def allowed(self, d: Decision) -> list[bool]:
        """Which actions decision ``d`` allows."""
        keep = [w == 1.0 or d.shrinkable for w in self.width_choices]
        formed = [k and form in d.forms for form, _ in self.forms for k in keep]
        return [d.removable, *keep, *formed]

    def masks(self, decisions: Sequence[Decision]) -> dict[str, np.ndarray]:
        """Per pass (``PASSES``), a (decisions x actions) boolean mask: ``joint`` every allowed action, ``removal``
        remove (where allowed) or keep at 1.0, ``shrink`` every allowed action but removal."""
        joint = np.array([self.allowed(d) for d in decisions], dtype=bool).reshape(len(decisions), len(self))
        removal = np.zeros_like(joint)
        removal[:, 0], removal[:, self.keep_action] = joint[:, 0], True
        shrink = joint.copy()
        shrink[:, 0] = False
        return {"joint": joint, "removal": removal, "shrink": shrink}

    def offers_form(self, d: Decision, form: str) -> bool:
        """Whether decision ``d`` has an action in ``form`` (the task offers the form and its unit can take it)."""
        return form in d.forms and any(name == form for name, _ in self.forms)

    def nearest(self, mask: np.ndarray, a: int, pass_name: str) -> int:
        """The allowed action closest to ``a``: in the removal pass any width means "keep" (widths come in the shrink
        pass); elsewhere the allowed width closest to the asked one ("remove" counting as width 0), same form first,
        then the wider."""
        if mask[a]:
            return a
        if pass_name == "removal":
            return self.keep_action
        form = self._form(a)
        return min(np.flatnonzero(mask), key=lambda c: (abs(self.widths[c] - self.widths[a]), self._form(c) != form,
                                                        -self.widths[c]))

    def _form(self, a: int) -> str | None:
        choice = self.choices[a]
        return choice.form if isinstance(choice, Keep) else None

    def from_ratio(self, ratio: float, mask: np.ndarray, remove_below: float) -> int:
        """The action of a continuous keep ratio in [0, 1] (AMC's action): remove when ``ratio < remove_below`` and
        removal is allowed, else the allowed plain width nearest to ``ratio`` (the narrower on a tie)."""
        if not math.isfinite(ratio):
            raise ValueError(f"a keep ratio must be a finite number, got {ratio!r}")
        if ratio < remove_below and mask[0]:
            return 0
        plain = [a for a in range(1, 1 + len(self.width_choices)) if mask[a]]
        return min(plain, key=lambda a: (abs(self.widths[a] - ratio), self.widths[a]))

    # -- labels and the recorded form ----------------------------------------------------------------------
    def label(self, a: int) -> str:
        """A short text for action ``a`` ("remove", "width 0.5", "width 0.5, kernel_1x1")."""
        return describe(self.choices[a])

    def encode(self, choices: Mapping[str, Choice]) -> dict[str, str]:
        """The lossless text form of ``choices`` (decision name -> token)."""
        return {name: token(choice) for name, choice in choices.items()}

    @staticmethod
    def decode(recorded: Mapping[str, Any], kernel_1x1: Mapping[str, bool] | None = None) -> dict[str, Choice]:
        """Choices from their recorded form: tokens, or the legacy widths (0.0 = removed) with ``kernel_1x1`` flags
        (tables and results from before the codec)."""
        return {name: parse(value, bool((kernel_1x1 or {}).get(name))) for name, value in recorded.items()}


choices_from_widths = ActionCodec.decode  # the name of the legacy decoding before the codec


def width_of(choice: Choice) -> float:
    """The width a choice keeps: 0.0 for a removal."""
    return 0.0 if choice == REMOVE else float(choice.width if isinstance(choice, Keep) else choice)


def token(choice: Choice) -> str:
    """The text form of one choice."""
    if choice == REMOVE:
        return REMOVE
    if not isinstance(choice, Keep) or choice.form is None:
        return repr(width_of(choice))
    return f"{choice.width!r}:{choice.form}" + (f"={choice.param!r}" if choice.param is not None else "")


def parse(value: Any, kernel_1x1: bool = False) -> Choice:
    """A choice from its token (or a legacy width, 0.0 = removed, with its kernel flag)."""
    if isinstance(value, str):
        if value == REMOVE:
            return REMOVE
        width, _, form = value.partition(":")
        name, _, param = form.partition("=")
        try:
            return Keep(float(width), form=name, param=float(param) if param else None) if name else float(width)
        except ValueError:
            raise ActionError(f"not a recorded choice: {value!r} (e.g. 'remove', '0.5', '0.5:kernel_1x1')") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ActionError(f"not a recorded choice: {value!r}")
    if value == 0.0:
        return REMOVE
    return Keep(float(value), kernel=1) if kernel_1x1 else float(value)


def describe(choice: Choice) -> str:
    """A short text for a choice."""
    if choice == REMOVE:
        return REMOVE
    if isinstance(choice, Keep) and choice.form is not None:
        param = f" {choice.param:g}" if choice.param is not None else ""
        return f"width {choice.width:g}, {choice.form}{param}"
    return f"width {width_of(choice):g}"
