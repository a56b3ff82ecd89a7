"""The layer above the library, the agents and the baselines: the ``ddc`` command, run folders, config files,
searches, baseline runs, reports, export, benchmark tables and benchmarks."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
