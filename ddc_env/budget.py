"""AMC's budget-constrained actions (He et al. 2018): each action is limited so that the decisions still to come, at
their narrowest widths, can meet a params, FLOPs or latency budget, so every episode's student meets it.

Example: ``gym.make(ID, action_mode="continuous", budget={"flops": 0.5})``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .arch import NetSpec
from .task import Task

__all__ = ["BUDGET_KEYS", "BudgetClipper", "check_budget"]

BUDGET_KEYS = ("params", "flops", "latency")


def check_budget(budget: Mapping[str, float] | None) -> tuple[str, float] | None:
    """``budget`` (one of ``{"params": r}``, ``{"flops": r}``, ``{"latency": r}``, r in (0, 1]) as (key, ratio)."""
    if budget is None:
        return None
    if not isinstance(budget, Mapping) or len(budget) != 1:
        raise ValueError(f"budget must be one of {{'params': r}}, {{'flops': r}}, {{'latency': r}} with r in (0, 1], "
                         f"got {budget!r}")
    (key, ratio), = budget.items()
    if key not in BUDGET_KEYS:
        raise ValueError(f"budget key must be one of {list(BUDGET_KEYS)}, got {key!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"budget ratio must be a number in (0, 1], got {ratio!r}")
    return key, float(ratio)


@dataclass
class BudgetClipper:
    """Clips actions to a budget: ``cost(spec)`` is the student's params, FLOPs or modelled latency, ``limit`` the
    budget times the teacher's. The narrowest student (every decision at its narrowest allowed plain width, no
    removal) must meet it, or construction fails."""

    task: Task
    key: str
    ratio: float
    cost: Callable[[NetSpec], float]

    def __post_init__(self) -> None:
        codec = self.task.codec
        joint = codec.masks(self.task.decisions)["joint"]
        plain = range(1, 1 + len(self.task.width_choices))
        self._narrowest = [min(a for a in plain if joint[j, a]) for j in range(len(self.task.decisions))]
        self.limit = self.ratio * self.cost(self.task.student_spec({}))
        floor = self.cost(self._spec([None] * len(self.task.decisions)))
        if floor > self.limit * (1 + 1e-9):
            raise ValueError(f"budget {{{self.key!r}: {self.ratio}}} cannot be met: the narrowest student of this "
                             f"task (every decision at its narrowest width) has a {self.key} ratio of "
                             f"{floor / self.cost(self.task.student_spec({})):.3f}")

    def allows(self, spec: NetSpec) -> bool:
        """Whether student ``spec`` meets the budget."""
        return self.cost(spec) <= self.limit * (1 + 1e-9)

    def _spec(self, actions: Sequence[int | None]) -> NetSpec:
        """The student of ``actions`` with every undecided decision (None) at its narrowest width."""
        choices = self.task.codec.choices
        return self.task.student_spec({d.name: choices[self._narrowest[j] if a is None else a]
                                       for j, (d, a) in enumerate(zip(self.task.decisions, actions))})

    def clip(self, actions: Sequence[int | None], j: int, a: int, mask: np.ndarray) -> int:
        """Action ``a`` for decision ``j`` (allowed by ``mask``), or the widest allowed action no wider (in the same
        form when one fits) that keeps the budget reachable, given the earlier ``actions`` (None: undecided, or only
        kept in a removal pass)."""
        widths, choices = self.task.codec.widths, self.task.codec.choices
        trial = list(actions)

        def fits(b: int) -> bool:
            trial[j] = b
            return self.allows(self._spec(trial))

        if a == 0 or fits(a):
            return a
        form = getattr(choices[a], "form", None)
        candidates = sorted((b for b in np.flatnonzero(mask) if 0 < widths[b] <= widths[a]),
                            key=lambda b: (getattr(choices[b], "form", None) != form, -widths[b]))
        return next((int(b) for b in candidates if fits(int(b))), self._narrowest[j])
