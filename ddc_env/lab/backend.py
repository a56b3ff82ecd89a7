"""Where student evaluations run: the backend options of every job that scores students (the ``ddc`` flags
``--backend``, ``--address``, ``--workers``, ``--cpus-per-worker``, ``--gpus-per-worker``), and the one function that
makes a scorer from them and an env config.

- ``local`` (default): the process that plays an env trains its students (each subprocess env its own scorer);
- ``ray``: a pool of Ray actors (:class:`~ddc_env.scoring.ray.RayScorer`) that every env of the job shares,
  subprocess envs included; records come back and the caller's results store writes them.

Example::

    options = BackendOptions("ray", workers=4)
    with open_backend(options, env_config) as scorer:
        records = CachedScorer(scorer, store).score_many(specs)
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..env import EnvConfig, make_live_scorer
from ..scoring import Scorer
from ..task import Task, load_task
from ..validate import check_choice, check_int, check_names, check_number

__all__ = ["BACKENDS", "FLAGS", "BackendOptions", "backend_flags", "make_backend_scorer", "open_backend"]

BACKENDS = ("local", "ray")
# each option but the name, and the ``ddc`` flag that sets it
FLAGS = {"address": "--address", "workers": "--workers", "cpus_per_worker": "--cpus-per-worker",
         "gpus_per_worker": "--gpus-per-worker"}


@dataclass(frozen=True)
class BackendOptions:
    """``name``: "local" or "ray"; for Ray, ``address`` of the cluster (None: a local instance, or
    ``RAY_ADDRESS``), ``workers`` (None: as many as the free resources hold) and the Ray resources of each
    worker, ``cpus_per_worker`` and ``gpus_per_worker`` (fractions allowed)."""

    name: str = "local"
    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.name, "backend", BACKENDS)
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise ValueError(f"backend address must be a Ray address such as host:6379, got {self.address!r}")
        check_int(self.workers, "backend workers", minimum=1, optional=True)
        object.__setattr__(self, "cpus_per_worker", check_number(self.cpus_per_worker, "backend cpus_per_worker",
                                                                 minimum=0.0, exclusive_minimum=True))
        object.__setattr__(self, "gpus_per_worker", check_number(self.gpus_per_worker, "backend gpus_per_worker",
                                                                 minimum=0.0))
        if self.name == "local":
            given = [flag for name, flag in FLAGS.items() if getattr(self, name) != getattr(BackendOptions, name)]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to the ray backend (--backend ray)")

    @property
    def shared(self) -> bool:
        """Whether one scorer serves every env of a command (Ray), instead of each env process its own."""
        return self.name != "local"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what a run's config.yaml records under ``backend``)."""
        return dataclasses.asdict(self)

    def overridden(self, name: str | None = None, **given: Any) -> BackendOptions:
        """These options with the ``given`` ones that are not None (e.g. flags over a config's or a resumed run's
        backend); a ``name`` other than this backend's starts from that backend's defaults. A ValueError names an
        option the chosen backend does not take."""
        options = self if name is None or name == self.name else BackendOptions(name)
        return dataclasses.replace(options, **{k: v for k, v in given.items() if v is not None})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BackendOptions:
        """Options from plain data (None: the defaults); unknown keys raise a ValueError naming the allowed ones."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"backend must be a mapping such as {{name: ray, workers: 4}}, got {data!r}")
        check_names(data, [f.name for f in dataclasses.fields(cls)], "backend key(s)")
        return cls(**data)


def backend_flags(options: BackendOptions) -> list[str]:
    """The command-line flags that give ``options`` (none for the defaults), e.g. to print a command that
    reproduces a run."""
    if not options.shared:
        return []
    given = [(flag, getattr(options, name)) for name, flag in FLAGS.items()
             if getattr(options, name) != getattr(BackendOptions, name)]
    return ["--backend", options.name, *(p for flag, value in given for p in (flag, f"{value:g}" if isinstance(
        value, float) else str(value)))]


def make_backend_scorer(options: BackendOptions, env_config: EnvConfig, task: Task | None = None) -> Scorer:
    """The scorer ``options`` ask for, scoring ``env_config``'s students at its fidelity with its time settings (no
    cache: wrap it in a :class:`~ddc_env.scoring.CachedScorer`). Local: a live scorer on ``task`` (loaded from the
    config when None). Ray: a new pool (``task`` is not needed: the workers load it); stop it with
    ``scorer.shutdown()``, or use :func:`open_backend`."""
    if not isinstance(env_config, EnvConfig):
        raise ValueError(f"the {options.name} backend scores the students of a live env (an EnvConfig), got "
                         f"{type(env_config).__name__}")
    if options.name == "local":
        return make_live_scorer(env_config, task if task is not None else load_task(env_config.task_config()))
    try:
        from ..scoring.ray import RayScorer  # here: Ray is an optional extra, and slow to import
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'ddc-env[ray]'") from None
    return RayScorer(env_config.task_config(), **env_config.scorer_kwargs(), workers=options.workers,
                     num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker, address=options.address)


@contextlib.contextmanager
def open_backend(options: BackendOptions, env_config: EnvConfig, task: Task | None = None) -> Iterator[Scorer]:
    """:func:`make_backend_scorer` for the ``with`` block: a Ray pool is shut down at its end."""
    scorer = make_backend_scorer(options, env_config, task)
    try:
        yield scorer
    finally:
        shutdown = getattr(scorer, "shutdown", None)
        if shutdown is not None:
            shutdown()
        else:
            scorer.close()
