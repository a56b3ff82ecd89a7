"""The arguments of a live DDC env (:class:`EnvConfig`), the checks every DDC env's behaviour arguments get, and the
live scorer a config describes."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .budget import check_budget
from .distill import Fidelity, make_fidelity
from .latency import LatencyProtocol
from .rewards import RewardFn, make_env_reward
from .scoring import LiveScorer
from .scoring.live import LATENCY_MODES
from .task import Task, TaskConfig
from .validate import check_choice, check_int, check_names, check_number

__all__ = ["ACTION_MODES", "BEHAVIOUR", "INVALID_REWARD", "MASKED_ACTIONS", "REMOVE_BELOW", "RENDER_MODES", "STAGES",
           "EnvConfig", "check_behaviour", "make_config", "make_live_scorer"]

ACTION_MODES = ("sequential", "one_shot", "continuous")
STAGES = ("two_stage", "joint")
MASKED_ACTIONS = ("nearest", "penalty")
RENDER_MODES = ("ansi",)
INVALID_REWARD = -1.0
REMOVE_BELOW = 0.1  # continuous mode: a keep ratio below this removes a removable unit
_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(TaskConfig))


@dataclass(frozen=True)
class EnvConfig(TaskConfig):
    """Every argument of :class:`DDCEnv`: the task's (:class:`~ddc_env.task.TaskConfig`: teacher, data, decisions)
    and how students are scored and rewarded, and the env behaves; see its docstring ("Arguments") for each."""

    fidelity: str | Mapping[str, Any] | Fidelity = "fast"
    reward: str | Mapping[str, Any] | RewardFn = "calibrated"
    action_mode: str = "sequential"
    stages: str = "two_stage"
    masked_action: str = "nearest"
    latency: str = "model"
    latency_batch_size: int = 1
    latency_threads: int = 1
    store: str | None = None
    run: str | None = None
    seed: int | None = None
    render_mode: str | None = None
    budget: Mapping[str, float] | None = None
    remove_below: float = REMOVE_BELOW

    def __post_init__(self) -> None:
        check_behaviour(**{name: getattr(self, name) for name in BEHAVIOUR if name != "reward"})
        check_choice(self.latency, "latency", LATENCY_MODES)
        check_int(self.latency_batch_size, "latency_batch_size", minimum=1)
        check_int(self.latency_threads, "latency_threads", minimum=1)
        for name in ("store", "run"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
            elif value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a path or None, got {value!r}")
        super().__post_init__()  # the task's fields
        make_fidelity(dict(self.fidelity) if isinstance(self.fidelity, Mapping) else self.fidelity)
        make_env_reward(self.reward, "flops" if self.latency == "flops" else "latency")

    def task_config(self) -> TaskConfig:
        """The task part of the arguments: teacher, data and decisions."""
        return TaskConfig(**{name: getattr(self, name) for name in _TASK_FIELDS})

    def latency_protocol(self) -> LatencyProtocol:
        """How students and teacher are timed (on the CPU)."""
        return LatencyProtocol(device="cpu", threads=self.latency_threads, batch_size=self.latency_batch_size)

    def scorer_kwargs(self) -> dict[str, Any]:
        """How students are scored, as :class:`~ddc_env.scoring.LiveScorer` (and a Ray pool's workers) take it:
        ``fidelity``, ``latency``, ``latency_protocol`` and ``device``."""
        return {"fidelity": dict(self.fidelity) if isinstance(self.fidelity, Mapping) else self.fidelity,
                "latency": self.latency, "latency_protocol": self.latency_protocol(), "device": self.device}


def check_behaviour(*, action_mode: str, stages: str, masked_action: str, render_mode: str | None, seed: int | None,
                    budget: Mapping[str, float] | None, remove_below: float) -> None:
    """Check the behaviour arguments every DDC env has, live or twin (:data:`BEHAVIOUR` but the reward)."""
    check_choice(action_mode, "action_mode", ACTION_MODES)
    check_choice(stages, "stages", STAGES)
    check_choice(masked_action, "masked_action", MASKED_ACTIONS)
    check_choice(render_mode, "render_mode", (None, *RENDER_MODES))
    check_int(seed, "seed", optional=True)
    check_budget(budget)
    check_number(remove_below, "remove_below", minimum=0.0, maximum=1.0)


# the arguments of the episode logic (ddc_env.env.CompressionEnv), the same for live envs and twins
BEHAVIOUR = ("reward", "action_mode", "stages", "masked_action", "seed", "render_mode", "budget", "remove_below")


def make_config(config: EnvConfig | None = None, **overrides: Any) -> EnvConfig:
    """``config`` (default: all defaults) with ``overrides``; unknown names raise a ValueError listing all."""
    check_names(overrides, [f.name for f in dataclasses.fields(EnvConfig)], "DDCEnv argument(s)")
    if config is not None and not isinstance(config, EnvConfig):
        raise ValueError(f"config must be an EnvConfig or None, got {type(config).__name__}")
    return dataclasses.replace(config or EnvConfig(), **overrides)


def make_live_scorer(config: EnvConfig, task: Task) -> LiveScorer:
    """The live scorer a config describes: KD at its fidelity, timed with its latency settings."""
    return LiveScorer(task, **config.scorer_kwargs())
