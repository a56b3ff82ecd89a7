"""The unit kinds of the IR, one file each, registered by ``@register_unit`` (see :mod:`.base`)."""
from .base import (FORMS, NEW, PASS, TIED, UNIT_TYPES, DecisionContext, Form, Ports, SpecError, Unit, UnitDecision,
                   register_form, register_unit)
from .block import Block, BlockUnit
from .conv import Conv, ConvUnit
from .fire import Fire
from .flatten import Flatten
from .global_pool import GlobalAvgPool, GlobalPool
from .inverted_residual import InvertedResidual
from .linear import Linear, LinearUnit
from .pool import Pool

__all__ = ["FORMS", "NEW", "PASS", "TIED", "UNIT_TYPES", "Block", "BlockUnit", "Conv", "ConvUnit", "DecisionContext",
           "Fire", "Flatten", "Form", "GlobalAvgPool", "GlobalPool", "InvertedResidual", "Linear", "LinearUnit",
           "Ports", "Pool", "SpecError", "Unit", "UnitDecision", "register_form", "register_unit"]
