"""The ``ddc`` command: one module per command registers its subparser (see ``COMMANDS``) and sets
``func(args) -> int``, which calls the lab (:mod:`ddc_env.lab`); bad input ends in a one-line error on stderr and exit
code 2."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import baseline, benchmark, export, quickstart, report, search, table, teacher
from .usage import Parser, UsageError

__all__ = ["COMMANDS", "build_parser", "main"]

# Each module adds one top-level command to the ``ddc`` parser with its ``add_command(commands)``.
COMMANDS = (teacher, quickstart, search, baseline, report, export, table, benchmark)


def build_parser() -> argparse.ArgumentParser:
    """The ``ddc`` argument parser with every command of ``COMMANDS``."""
    parser = Parser(prog="ddc", description="Reinforcement-learning model compression (ddc-env).")
    parser.add_argument("--version", action="version", version=f"ddc-env {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ddc`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # DataError, CheckpointError, SpecError, unknown model, bad path
        print("ddc: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
