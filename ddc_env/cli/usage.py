"""Bad command-line input: the error every ``ddc`` command raises for it, and the parser that raises it instead of
printing its usage and exiting."""
from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["Parser", "UsageError", "usage_error"]


class UsageError(Exception):
    """Bad command-line input, reported as one line and exit code 2."""


def usage_error(command: str, message: str | Exception) -> UsageError:
    """``message`` (or a library's error about an argument) on one line, prefixed ``<command>: error:``."""
    return UsageError(f"{command}: error: {' '.join(str(message).split())}")


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, no usage dump) instead of exiting; its subparsers do too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")
