"""The arguments of every ``ddc`` command that scores students: where they are evaluated
(:class:`~ddc_env.lab.backend.BackendOptions`)."""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..lab.backend import BACKENDS, FLAGS, BackendOptions
from .argtypes import positive_float, positive_int

__all__ = ["add_backend_arguments", "backend_given", "backend_options"]


def add_backend_arguments(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    """Add ``--backend``, ``--address``, ``--workers`` (unless ``workers`` is false: the command has its own),
    ``--cpus-per-worker`` and ``--gpus-per-worker`` (all defaulting to None: "not given", see
    :func:`backend_options`)."""
    group = parser.add_argument_group("where students are evaluated")
    group.add_argument("--backend", choices=BACKENDS,
                       help="local (default): this machine's processes train the students; ray: a pool of Ray "
                            "actors shared by every env of the run")
    group.add_argument("--address", help="Ray cluster address (host:6379 from `ray start --head`, or auto); "
                                         "default: start a local Ray instance")
    if workers:
        group.add_argument("--workers", type=positive_int, metavar="N",
                           help="Ray workers (default: as many as the free CPUs/GPUs hold)")
    group.add_argument("--cpus-per-worker", type=positive_float, metavar="F",
                       help="CPUs per Ray worker (default 1; also its torch threads)")
    group.add_argument("--gpus-per-worker", type=float, metavar="F",
                       help="GPUs per Ray worker, fractions pack several on one GPU (default 0)")


def backend_options(args: argparse.Namespace, base: Mapping[str, Any] | None = None, *,
                    workers: bool = True) -> BackendOptions:
    """The options the arguments of :func:`add_backend_arguments` give over ``base`` (e.g. a config's or a resumed
    run's backend; None: the defaults), see :meth:`~ddc_env.lab.backend.BackendOptions.overridden`; ``workers=False``:
    ``args.workers`` is not the Ray workers (a command with a ``--workers`` of its own)."""
    given = {name: getattr(args, name) for name in FLAGS if workers or name != "workers"}
    return BackendOptions.from_dict(base).overridden(args.backend, **given)


def backend_given(args: argparse.Namespace) -> bool:
    """Whether any argument of :func:`add_backend_arguments` was given."""
    return any(getattr(args, name) is not None for name in ("backend", *FLAGS))
