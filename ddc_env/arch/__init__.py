"""The network IR: specs, decisions on them, module building and teacher-weight inheritance."""
from .actions import (N2N_WIDTHS, REMOVE, ActionError, Choice, Decision, Keep, apply_decisions, decision_table,
                      round_channels, stream_groups, uniform_choices)
from .build import Net, build, module_key
from .inherit import inherit, recalibrate_batchnorm
from .spec import Block, Conv, Flatten, GlobalPool, Linear, NetSpec, Pool, SpecError, Unit

__all__ = [
    "N2N_WIDTHS", "REMOVE", "ActionError", "Block", "Choice", "Conv", "Decision", "Flatten", "GlobalPool", "Keep",
    "Linear", "Net", "NetSpec", "Pool", "SpecError", "Unit", "apply_decisions", "build", "decision_table",
    "inherit", "module_key", "recalibrate_batchnorm", "round_channels", "stream_groups", "uniform_choices",
]
