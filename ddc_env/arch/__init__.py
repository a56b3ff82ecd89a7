"""The network IR: specs, decisions on them, module building and teacher-weight inheritance."""
from .actions import (N2N_WIDTHS, REMOVE, ActionError, Choice, Decision, Keep, apply_decisions, channel_counts,
                      choices_from_widths, decision_table, round_channels, stream_groups, uniform_choices,
                      with_channels)
from .build import Net, build, module_key, unit_module
from .inherit import inherit, l1_importance, recalibrate_batchnorm, stale_batchnorms
from .spec import Block, Conv, Flatten, GlobalPool, Linear, NetSpec, Pool, SpecError, Unit

__all__ = [
    "N2N_WIDTHS", "REMOVE", "ActionError", "Block", "Choice", "Conv", "Decision", "Flatten", "GlobalPool", "Keep",
    "Linear", "Net", "NetSpec", "Pool", "SpecError", "Unit", "apply_decisions", "build", "channel_counts",
    "choices_from_widths", "decision_table", "inherit", "l1_importance", "module_key", "recalibrate_batchnorm",
    "round_channels", "stale_batchnorms", "stream_groups", "uniform_choices", "unit_module", "with_channels",
]
