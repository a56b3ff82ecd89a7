"""The ``ddc`` command line: argument parsing only, one module per command, each calling the lab
(:mod:`ddc_env.lab`), the layer above the library, the agents and the baselines where the jobs themselves live."""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
