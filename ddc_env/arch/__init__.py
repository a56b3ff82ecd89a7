"""The network IR: unit kinds (one file each, in ``units/``), specs, channel spaces, decisions on them, the action
codec, module building and teacher-weight inheritance."""
from .actions import (N2N_WIDTHS, REMOVE, ActionError, Choice, Decision, Keep, apply_decisions, decision_table,
                      round_channels, uniform_choices)
from .build import Net, build, module_key, state_dict_shapes, unit_module
from .channels import (channel_counts, channel_dims, channel_spaces, inner_key, spec_of_pruned, stream_groups,
                       with_channels)
from .codec import ActionCodec, choices_from_widths
from .inherit import inherit, l1_importance, recalibrate_batchnorm, stale_batchnorms
from .spec import NetSpec, UnitShape
from .units import (FORMS, UNIT_TYPES, Block, Conv, Flatten, Form, GlobalPool, Linear, Pool, SpecError, Unit,
                    register_form, register_unit)

__all__ = [
    "FORMS", "N2N_WIDTHS", "REMOVE", "UNIT_TYPES", "ActionCodec", "ActionError", "Block", "Choice", "Conv", "Decision",
    "Flatten", "Form", "GlobalPool", "Keep", "Linear", "Net", "NetSpec", "Pool", "SpecError", "Unit", "UnitShape",
    "apply_decisions", "build", "channel_counts", "channel_dims", "channel_spaces", "choices_from_widths",
    "decision_table", "inherit", "inner_key", "l1_importance", "module_key", "recalibrate_batchnorm", "register_form",
    "register_unit", "round_channels", "spec_of_pruned", "stale_batchnorms", "state_dict_shapes", "stream_groups",
    "uniform_choices", "unit_module", "with_channels",
]
