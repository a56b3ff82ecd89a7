"""Compression baselines that run on the env's own teacher, data split and evaluator and write the env's
metrics records into the same kind of results store, so one report compares them with any search.

``BASELINES`` maps a name to the module that runs it (imported only when used); each module has
``run(ctx, **kwargs)`` and a ``Kwargs`` dataclass of its arguments and defaults. Run one with
``ddc baseline NAME --config lenet5_mnist`` or :func:`ddc_env.lab.baseline.run_baseline`.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

from ddc_env.validate import check_names


@dataclass(frozen=True)
class BaselineEntry:
    """How to run one baseline: ``module.run`` with ``fixed`` keyword arguments (e.g. ``ranking="taylor"``)."""

    module: str
    summary: str
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def arguments(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The module's ``Kwargs`` defaults updated with ``given`` and the fixed arguments; unknown names or bad
        values raise a ValueError."""
        cls = self.load().Kwargs
        check_names(given, [f.name for f in dataclasses.fields(cls) if f.name not in self.fixed],
                    "argument(s)")
        return dataclasses.asdict(cls(**{**given, **self.fixed}))


_PKG = "ddc_env.baselines."
_PRUNE = _PKG + "structured_pruning"
BASELINES: Mapping[str, BaselineEntry] = MappingProxyType({
    "l1_pruning": BaselineEntry(_PRUNE, "structured filter pruning by L1 norm + KD fine-tuning", {"ranking": "l1"}),
    "taylor_pruning": BaselineEntry(_PRUNE, "structured filter pruning by Taylor ranking (Molchanov 2017) + "
                                            "KD fine-tuning", {"ranking": "taylor"}),
    "uniform": BaselineEntry(_PKG + "uniform", "one width multiplier for every unit, KD fine-tuned"),
    "pakd": BaselineEntry(_PRUNE, "PaKD: alternate per-layer structured pruning and KD over several stages",
                          {"allocation": "per_layer", "ranking": "l1"}),
    "torch_pruning": BaselineEntry(_PKG + "library_pruning", "structural pruning by the torch-pruning library "
                                                             "(DepGraph) + KD fine-tuning"),
    "kd_student": BaselineEntry(_PKG + "kd_student", "KD into a fixed hand-designed student (DDC's small VGG)"),
    "kd_pyramid": BaselineEntry(_PKG + "kd_student", "teacher-assistant chain: teacher -> assistants -> "
                                                        "student, each distilled from the previous",
                                {"chain": True}),
    "deep_compression": BaselineEntry(_PKG + "deep_compression", "magnitude pruning + k-means weight sharing + "
                                                                    "Huffman coding (Deep Compression)"),
    "int8": BaselineEntry(_PKG + "quantize", "post-training static int8 quantization (teacher or a student)"),
})


def get_baseline(name: str) -> BaselineEntry:
    """The registry entry of ``name``; a ValueError lists the known baselines."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; allowed: {', '.join(BASELINES)}")
    return BASELINES[name]


__all__ = ["BASELINES", "BaselineEntry", "get_baseline"]
