"""``ddc export``: a run's best student or final model to TorchScript or ONNX, checked against torch
(:func:`ddc_env.lab.export.export_model`)."""
from __future__ import annotations

import argparse

from ..lab.export import FORMATS, export_model
from .usage import usage_error

__all__ = ["add_command"]


def _export(args: argparse.Namespace) -> int:
    try:
        result = export_model(args.run_dir, fmt=args.format, spec_hash=args.spec, label=args.label, out=args.out)
    except ValueError as e:  # ExportError, or a path that is not a run folder
        raise usage_error("ddc export", e) from None
    print(f"exported {result.what} to {result.path} ({result.format}); max abs difference from the torch model "
          f"{result.max_abs_diff:.2e} on {result.inputs}")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc export``."""
    p = commands.add_parser(
        "export", help="export a run's best student or final model to TorchScript or ONNX",
        description="Export a search's best student (default), a student it evaluated (--spec, trained again as "
                    "the env trained it) or a baseline's final model (--label, default the first) to TorchScript "
                    "or ONNX (fp32, CPU, dynamic batch axis), and check the exported outputs against torch's.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder of ddc search or ddc baseline")
    p.add_argument("--format", choices=FORMATS, default="torchscript",
                   help="torchscript (default) or onnx (needs pip install 'ddc-env[onnx]')")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--spec", metavar="SPEC_HASH", help="a search's evaluated student by spec hash (or prefix)")
    which.add_argument("--label", help="a baseline's final model by label (e.g. 'uniform 0.5')")
    p.add_argument("--out", metavar="FILE", help="output file (default: RUN_DIR/export/<model>.ts or .onnx)")
    p.set_defaults(func=_export)
