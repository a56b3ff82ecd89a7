"""What an env precomputes about a task's decisions, once, so a step is array lookups: the masks of each pass and the
nearest allowed actions (from the task's action codec), the order of the passes, each decision's observation row
(its unit's features, normalised so that a policy transfers across teachers) and the params each action saves."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .task import Task

__all__ = ["FEATURES", "OBS_DIM", "DecisionWalk"]

FEATURES = ("is_conv", "is_block", "is_linear", "is_stage", "kernel", "stride", "log_channels",
            "log_in_channels", "spatial", "position", "pass", "removable", "shrinkable", "kernel_shrinkable",
            "param_share", "params_kept", "prev_width")
OBS_DIM = len(FEATURES)
F = {name: i for i, name in enumerate(FEATURES)}  # feature name -> index


class DecisionWalk:
    """The per-task tables of an env (see the module docstring). ``masks[pass]`` and ``nearest[pass]`` are per
    decision and action; ``removal_plan`` / ``shrink_candidates`` the decisions each pass of the two-stage order
    visits; ``rows[pass]`` the observation rows; ``savings[j][a]`` the share of the teacher's params that action ``a``
    of decision ``j`` saves, taken alone; ``start_kept`` the student's params share before any decision."""

    def __init__(self, task: Task) -> None:
        codec, spec, decisions = task.codec, task.teacher_spec, task.decisions
        self.task = task
        n, k = len(decisions), len(task.width_choices)
        self.masks = codec.masks(decisions)
        self.mask_lists = {name: m.tolist() for name, m in self.masks.items()}  # fast scalar lookups
        self.nearest = {name: [[codec.nearest(m[j], a, name) for a in range(m.shape[1])] for j in range(n)]
                        for name, m in self.masks.items()}
        joint = self.masks["joint"]
        self.removal_plan = [j for j in range(n) if joint[j, 0]]
        self.shrink_candidates = [j for j in range(n) if self.masks["shrink"][j].sum() > 1]

        rows = {r.unit.name: r for r in spec.shapes()}
        teacher_params = spec.params
        base_params = task.student_spec({}).params  # the class subset's classifier alone already saves a little
        savings = np.zeros(joint.shape)
        for j, d in enumerate(decisions):
            for a in np.flatnonzero(joint[j]):
                student = task.student_spec({d.name: codec.choices[a]})
                savings[j, a] = (base_params - student.params) / teacher_params
        self.savings = savings.tolist()
        self.start_kept = base_params / teacher_params

        feats = np.zeros((n, OBS_DIM), dtype=np.float32)
        self.shares: list[float] = []
        height = spec.input_size[0]
        for j, d in enumerate(decisions):
            row, unit = rows[d.unit], spec.unit(d.unit)
            kind = "stage" if d.kind == "stage" else unit.obs_kind
            share = sum(rows[m].params for m in (d.members or (d.unit,))) / teacher_params
            self.shares.append(share)
            f = feats[j]
            if kind:
                f[F[f"is_{kind}"]] = 1.0
            for name, value in unit.obs_features().items():
                f[F[name]] = value
            f[F["log_channels"]] = math.log2(d.channels) / 12
            f[F["log_in_channels"]] = math.log2(row.inp[0]) / 12
            f[F["spatial"]] = (row.out[1] if len(row.out) == 3 else 1) / height
            f[F["position"]] = j / (n - 1) if n > 1 else 0.0
            f[F["removable"]] = joint[j, 0]
            f[F["shrinkable"]] = joint[j, 1:k].any()
            f[F["kernel_shrinkable"]] = codec.offers_form(d, "kernel_1x1")
            f[F["param_share"]] = share
        feats[:, F["params_kept"]] = self.start_kept
        feats[:, F["prev_width"]] = 1.0
        np.clip(feats, 0.0, 1.0, out=feats)
        shrink_rows = feats.copy()
        shrink_rows[:, F["pass"]] = 1.0
        self.rows = {"removal": feats, "joint": feats, "shrink": shrink_rows}
        self.flat_obs = feats.reshape(-1).copy()

    def shrink_plan(self, actions: list[int | None]) -> list[int]:
        """The shrink pass that follows the removal pass's ``actions``: the shrinkable decisions kept."""
        return [j for j in self.shrink_candidates if actions[j] != 0]

    def layer_table(self) -> list[dict[str, Any]]:
        """One row per decision, in network order (a new list on every call)."""
        table = []
        joint = self.rows["joint"]
        for j, d in enumerate(self.task.decisions):
            unit = self.task.teacher_spec.unit(d.unit)
            table.append({
                "name": d.name, "kind": d.kind, "unit": d.unit, "unit_type": unit.type, "channels": d.channels,
                "kernel": getattr(unit, "kernel", 1), "stride": getattr(unit, "stride", 1),
                "removable": bool(self.masks["joint"][j, 0]), "shrinkable": bool(joint[j, F["shrinkable"]]),
                "kernel_shrinkable": bool(joint[j, F["kernel_shrinkable"]]), "param_share": self.shares[j],
                "features": joint[j].tolist(),
            })
        return table
