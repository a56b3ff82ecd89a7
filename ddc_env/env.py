"""The Gymnasium environment: an agent removes and shrinks the layers of a teacher CNN, one decision per step
(or all at once); the student is scored by the env's scorer (by default: built from the teacher's weights,
distilled briefly and measured) and rewarded.

Example::

    env = DDCEnv(model="resnet18", dataset="cifar10", fidelity="fast")
    obs, info = env.reset(seed=0)
    while True:
        action = env.np_random.choice(np.flatnonzero(env.action_masks()))
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated:
            break
    info["val_acc"], info["param_ratio"], reward
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .arch import N2N_WIDTHS, Choice, Decision, NetSpec
from .arch.codec import width_of
from .calibration import calibrated
from .distill import Fidelity, make_fidelity
from .latency import LatencyProtocol
from .models.checkpoints import TeacherCheckpoint
from .models.teacher import TeacherRecipe
from .rewards import RewardFn, make_env_reward
from .scoring import CachedScorer, LiveScorer, Scorer
from .scoring.live import LATENCY_MODES
from .task import Task, TaskConfig, load_task
from .validate import check_choice, check_int, check_names

ACTION_MODES = ("sequential", "one_shot")
STAGES = ("two_stage", "joint")
MASKED_ACTIONS = ("nearest", "penalty")
RENDER_MODES = ("ansi",)
INVALID_REWARD = -1.0
FEATURES = ("is_conv", "is_block", "is_linear", "is_stage", "kernel", "stride", "log_channels",
            "log_in_channels", "spatial", "position", "pass", "removable", "shrinkable", "kernel_shrinkable",
            "param_share", "params_kept", "prev_width")
OBS_DIM = len(FEATURES)
_F = {name: i for i, name in enumerate(FEATURES)}
_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(TaskConfig))


@dataclass(frozen=True)
class EnvConfig:
    """Every argument of :class:`DDCEnv`; see its docstring ("Arguments") for what each one means."""

    model: str = "resnet18"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    teacher: str | os.PathLike[str] | TeacherCheckpoint = "auto"
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = True
    classes: str | tuple[str | int, ...] | None = None
    max_train: int | None = None
    max_val: int | None = None
    fidelity: str | Mapping[str, Any] | Fidelity = "fast"
    reward: str | Mapping[str, Any] | RewardFn = "calibrated"
    action_mode: str = "sequential"
    stages: str = "two_stage"
    masked_action: str = "nearest"
    width_choices: tuple[float, ...] = N2N_WIDTHS
    kernel_shrink: bool = False
    forms: Mapping[str, float | None] | tuple[str, ...] = ()
    channel_round: int = 8
    min_channels: int = 8
    latency: str = "model"
    latency_batch_size: int = 1
    latency_threads: int = 1
    device: str = "auto"
    store: str | None = None
    run: str | None = None
    seed: int | None = None
    render_mode: str | None = None
    teacher_epochs: int | None = None
    teacher_recipe: TeacherRecipe | Mapping[str, Any] | None = None
    train_teacher: bool = False

    def __post_init__(self) -> None:
        check_behaviour(self.action_mode, self.stages, self.masked_action, self.render_mode, self.seed)
        check_choice(self.latency, "latency", LATENCY_MODES)
        check_int(self.latency_batch_size, "latency_batch_size", minimum=1)
        check_int(self.latency_threads, "latency_threads", minimum=1)
        for name in ("store", "run"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
            elif value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a path or None, got {value!r}")
        task = self.task_config()  # validates the task fields
        for name in ("model_kwargs", "width_choices", "forms", "classes", "data_dir"):
            object.__setattr__(self, name, getattr(task, name))
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


def check_behaviour(action_mode: str, stages: str, masked_action: str, render_mode: str | None,
                    seed: int | None) -> None:
    """Check the arguments every DDC env has, live or twin."""
    check_choice(action_mode, "action_mode", ACTION_MODES)
    check_choice(stages, "stages", STAGES)
    check_choice(masked_action, "masked_action", MASKED_ACTIONS)
    check_choice(render_mode, "render_mode", (None, *RENDER_MODES))
    check_int(seed, "seed", optional=True)


def make_config(config: EnvConfig | None = None, **overrides: Any) -> EnvConfig:
    """``config`` (default: all defaults) with ``overrides``; unknown names raise a ValueError listing all."""
    check_names(overrides, [f.name for f in dataclasses.fields(EnvConfig)], "DDCEnv argument(s)")
    if config is not None and not isinstance(config, EnvConfig):
        raise ValueError(f"config must be an EnvConfig or None, got {type(config).__name__}")
    return dataclasses.replace(config or EnvConfig(), **overrides)


def make_live_scorer(config: EnvConfig, task: Task) -> LiveScorer:
    """The live scorer a config describes: KD at its fidelity, timed with its latency settings."""
    return LiveScorer(task, **config.scorer_kwargs())


class DDCEnv(gym.Env):
    """Data-driven compression of a trained CNN (N2N / DDC) as a Gymnasium environment.

    ## Description

    A trained *teacher* CNN is given. The agent walks through the teacher's decision points (conv layers,
    residual blocks, hidden fully-connected layers and ResNet stages, whose blocks share one residual
    width) and decides for each whether to **remove** it or **keep** it at a fraction of its channels
    (optionally with its kernel shrunk to 1x1). At the end of the episode the *student* is built with the
    teacher's weights (largest-L1 filters), its BatchNorm statistics are re-estimated, it is trained briefly
    by knowledge distillation at the chosen fidelity, measured (validation accuracy on a split the teacher
    never trained on, params, FLOPs, latency, size) and rewarded. How a student is scored is the env's *scorer*
    (:mod:`ddc_env.scoring`): live KD training behind the results store by default, or a benchmark table or
    surrogate model in the ``DDC-Bench-*`` twins. Evaluations are cached, so a repeated student costs nothing.
    With ``classes`` a subset of the teacher's classes, the student only has to serve those classes (DDC's
    data-driven compression).

    ## Action Space

    ``action_mode="sequential"`` (default): ``Discrete(1 + K (1 + F))``, ``K = len(width_choices)``, ``F`` the
    number of forms offered (``kernel_shrink=True`` and ``forms``; 0 by default); the task's
    :class:`~ddc_env.arch.ActionCodec` owns this layout:

    - 0: remove the unit
    - 1..K: keep it at ``width_choices[k - 1]`` of the teacher's channels (``width_choices[-1]`` is 1.0)
    - then K actions per form: the same widths with the kernel shrunk to 1x1 (``kernel_shrink=True``), or with the
      conv replaced by a SqueezeNet Fire module (``forms={"fire": squeeze_ratio}``), in that order

    On a residual block the width scales its inner width; on an inverted residual block its expansion (``t * w``).

    ``action_masks()`` gives the allowed actions of the current step (for MaskablePPO): removal only where the
    unit is removable (never the first conv, downsampling units, projection blocks, stages or the classifier),
    widths below 1 only where the width can shrink, width 1.0 always, a form only on units that can take it (a 1x1
    kernel: odd kxk "same" convs; fire: those convs after the first, with their own width).
    With ``stages="two_stage"`` (N2N) a removal pass over the removable decisions (remove or keep at 1.0) is
    followed by a shrink pass over the shrinkable decisions that were kept (widths and kernels, no removal);
    with ``stages="joint"`` there is one step per decision with all its options.

    ``action_mode="one_shot"``: one step, ``MultiDiscrete([1 + K (+ K)] * n_decisions)`` over all decisions
    in network order; ``action_masks()`` is the concatenation of the per-decision masks (the MultiDiscrete
    format of MaskablePPO) and ``stages`` plays no role. The same choices give the same student (same spec
    hash) in every mode and stage order.

    An action outside the action space raises a ``ValueError``. An action inside it that the mask forbids is
    handled by ``masked_action``: ``"nearest"`` (default, what a generic RL library that ignores masks needs) takes
    the nearest allowed action instead (in the removal pass: any width means "keep", the width is decided in the
    shrink pass; elsewhere the allowed width closest to the asked one, "remove" counting as width 0) and counts it
    in ``info["masked_actions"]``, like AMC's clipped actions; ``"penalty"`` (N2N) ends the episode with reward
    -1.0, ``info["status"] == "invalid"`` and ``info["reason"]`` naming the decision and the action.

    ## Observation Space

    Sequential mode: a float32 ``Box(0, 1, (17,))`` describing the current decision, normalised so that a
    policy transfers across teachers of different depth (``FEATURES`` names the entries):

    | Num | Observation       | Meaning                                                                 |
    |-----|-------------------|-------------------------------------------------------------------------|
    | 0-3 | unit kind         | one-hot: conv, residual block, linear, stage (shared residual width)    |
    | 4   | kernel            | kernel size / 7 (0 for linear)                                          |
    | 5   | stride            | stride / 2 (0 for linear)                                               |
    | 6   | log channels      | log2(teacher's channels this decision scales) / 12                      |
    | 7   | log in channels   | log2(input channels or features) / 12                                   |
    | 8   | spatial           | output height / input image height (1 / height for vectors)            |
    | 9   | position          | index of the decision / (number of decisions - 1)                       |
    | 10  | pass              | 0 removal pass (or joint), 1 shrink pass                                 |
    | 11  | removable         | 1 if the decision can remove its unit                                   |
    | 12  | shrinkable        | 1 if its width can shrink (with the configured widths)                  |
    | 13  | kernel shrinkable | 1 if its kernel can shrink to 1x1 (``kernel_shrink=True`` only)         |
    | 14  | param share       | share of the teacher's params in the units this decision governs        |
    | 15  | params kept       | running estimate of the student's params / teacher's params             |
    | 16  | previous width    | width chosen at the previous step (remove = 0, none yet = 1)            |

    "params kept" adds up the exact saving of each choice taken alone (precomputed), so it is cheap but
    ignores interactions between choices. One-shot mode: the rows of all decisions (at their starting
    values), flattened to a ``Box(0, 1, (17 * n_decisions,))``. The observation after the last step is all
    zeros except "params kept" and "previous width".

    ## Rewards

    Every step but the last gives 0. The last step evaluates the student and returns ``reward(record)``:
    by default ``"calibrated"``, DDC's ``s(k_a(A/A_t - a)) * s(-k_t(T/T_t - t)) * s(-k_p(P/P_t - p))`` (logistic
    ``s``; ``T`` is the latency model's time, or FLOPs with ``latency="flops"``) with its thresholds and slopes
    fitted once per task and fidelity to uniform-width students (accuracy floor at the narrowest one, time and params
    thresholds at the half-width one; see :class:`ddc_env.rewards.CalibratedReward`), so that the reward varies over
    the students a search meets; ``"ddc"``, the paper's thresholds 0.9 / 0.3 / 0.6 and slope 15; N2N's
    ``(A/A_t) C (2 - C)``,
    ``C = 1 - P/P_t``, a budget-constrained reward whose epsilon the env anneals over its episodes, or any
    callable (see :func:`ddc_env.rewards.make_reward`). A student whose training diverged gets -1.0 from the
    built-in rewards; a masked action under ``masked_action="penalty"`` gets -1.0.

    ## Starting State

    The first decision of the first pass, with every unit kept at full width. The environment is
    deterministic given the actions; ``reset(seed=...)`` seeds ``self.np_random`` for the agent's
    convenience. ``reset`` returns ``info["layer_table"]`` (one row per decision: name, kind, unit,
    unit_type, channels, kernel, stride, removable, shrinkable, kernel_shrinkable, param_share, features)
    for controllers that read all layers at once, ``info["n_decisions"]`` and ``info["stages"]``.

    ## Episode End

    The episode terminates after the last decision (one step in one-shot mode) or at a masked action; it is
    never truncated. The terminal ``info`` is the evaluation record: ``status`` ("ok", "diverged",
    "invalid"), ``reason``, ``val_acc``, ``teacher_val_acc``, ``params``, ``flops``, ``latency_ms``,
    ``size_bytes`` and their ``teacher_*`` values, ``acc_ratio``, ``param_ratio``, ``flop_ratio``,
    ``latency_ratio``, ``spec`` (the student's JSON), ``spec_hash``, ``eval_seconds`` (what the evaluation
    took), ``simulated_seconds`` (what this step cost a search: ``eval_seconds``, or 0 on a cache hit),
    ``train_seconds``, ``cache_hit``, ``fidelity``, plus ``reward``, ``choices`` (decision name -> the width
    kept, 0.0 for a removed unit), ``choice_tokens`` (decision name -> the choice's lossless text form, e.g.
    ``"remove"``, ``"0.5"``, ``"0.5:kernel_1x1"``: ``task.codec.decode`` rebuilds the exact student) and
    ``masked_actions``. Every info key keeps one type across episodes, so gymnasium's vector envs can batch the
    infos.

    ## Arguments

    ``DDCEnv(config: EnvConfig | None = None, *, scorer: Scorer | None = None, **overrides)``, e.g.
    ``gym.make("DDC-ResNet18-CIFAR10", fidelity="zero")``; an unknown argument raises a ValueError listing the
    allowed ones. ``scorer`` replaces the default live scorer (its task replaces the task arguments), e.g.
    ``CachedScorer(RayScorer(...), store)`` to evaluate on a Ray pool (:mod:`ddc_env.scoring.ray`).

    - ``model``: the zoo architecture of the teacher (``ddc_env.models.MODELS``); ``model_kwargs`` (e.g.
      ``{"stem": "imagenet"}``) complete it for an "auto" teacher (a checkpoint brings its own architecture).
    - ``teacher``: "auto" (the cached teacher of ``model`` on the whole dataset; if there is none it is trained
      now when that takes under 5 minutes here, or with ``train_teacher=True``, with ``teacher_epochs`` /
      ``teacher_recipe``), a checkpoint path (it brings its own architecture), or a loaded ``TeacherCheckpoint``.
    - ``dataset``, ``data_dir``, ``download``, ``classes``, ``max_train``, ``max_val``: the data
      (see :class:`ddc_env.data.DataConfig`); ``classes`` may be a subset of the teacher's classes. ``data_dir``
      defaults to ``$DDC_DATA_DIR``, else ``$DDC_HOME/data``; a torchvision dataset (cifar10, cifar100, mnist,
      svhn) that is not there is downloaded into it (``download=False`` to refuse).
    - ``fidelity``: how students are trained and measured: "smoke", "zero", "fast", "standard", "n2n_paper",
      "ddc_paper", a dict of overrides ``{"name": "fast", "epochs": 2}`` or a ``Fidelity``.
    - ``reward``: "calibrated" (default), "ddc" (the paper's), "n2n", a dict (``{"name": "budget",
      "max_param_ratio": 0.2}``, ``{"name": "calibrated", "steepness": 6}``, ``{"name": "ddc", "slope": 10}``) or a
      callable.
    - ``action_mode`` ("sequential" | "one_shot"), ``stages`` ("two_stage" | "joint"), ``masked_action``
      ("nearest" | "penalty"), ``width_choices`` (increasing, in (0, 1], with 1.0), ``kernel_shrink``, ``forms``
      (registered forms to offer, e.g. ``("fire",)`` or ``{"fire": 0.5}`` with the squeeze ratio; default none),
      ``channel_round``, ``min_channels``.
    - ``latency``: the reward's time: "model" (default: per-unit latency table measured once per device and
      cached, the same in every process), "measured" (student and teacher timed in interleaved rounds) or
      "flops"; ``latency_batch_size``, ``latency_threads`` (default 1); ``device`` ("auto" | "cpu" | "cuda")
      where students train.
    - ``store``: path of the SQLite results store shared by every process of a run (None: in memory);
      ``run``: the run name written with each evaluation.
    - ``seed``: seeds ``np_random`` at the first ``reset()`` without a seed; ``render_mode``: None | "ansi".

    Pickling keeps the arguments only: an unpickled copy reloads data and teacher and starts a new episode,
    which is what subprocess vector envs need.

    ## Version History

    - v0: initial version. The ids carry Gymnasium's version suffix (``DDC-LeNet5-MNIST-v0``); the names without
      it are aliases of the latest version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(self, config: EnvConfig | None = None, *, scorer: Scorer | None = None, **overrides: Any) -> None:
        self.config = cfg = make_config(config, **overrides)
        self._given_scorer = scorer
        if scorer is None:
            scorer = CachedScorer(make_live_scorer(cfg, load_task(cfg.task_config())), cfg.store, run=cfg.run)
        self._setup(scorer, reward=cfg.reward, action_mode=cfg.action_mode, stages=cfg.stages,
                    masked_action=cfg.masked_action, seed=cfg.seed, render_mode=cfg.render_mode)

    @staticmethod
    def make_config(**kwargs: Any) -> EnvConfig:
        """The checked config of these arguments (what :func:`ddc_env.registration.env_config` asks for)."""
        return make_config(**kwargs)

    def _setup(self, scorer: Scorer, *, reward: Any, action_mode: str, stages: str, masked_action: str,
               seed: int | None, render_mode: str | None) -> None:
        """Everything but the configuration: the task's decisions, spaces, masks and observation rows."""
        check_behaviour(action_mode, stages, masked_action, render_mode, seed)
        self.scorer, self.task = scorer, scorer.task
        self.teacher_spec: NetSpec = self.task.teacher_spec
        self.decisions: tuple[Decision, ...] = self.task.decisions
        self.action_choices: tuple[Choice, ...] = self.task.action_choices
        self._action_width = list(self.task.action_widths)
        self.reward_fn: RewardFn = make_env_reward(reward, scorer.time_term)
        self._calibrated = False
        self.stages, self.masked_action, self.render_mode = stages, masked_action, render_mode
        self._seed = seed
        self._episodes = 0  # finished episodes: the clock of a reward's schedule (N2N's budget annealing)
        self._prefetched: dict[str, list[Future]] = {}  # spec hash -> futures of prefetch(), oldest first
        self._precompute()

        n, a = len(self.decisions), len(self.action_choices)
        self._one_shot = action_mode == "one_shot"
        if self._one_shot:
            self.action_space: spaces.Space = spaces.MultiDiscrete([a] * n)
            self.observation_space: spaces.Space = spaces.Box(0.0, 1.0, (n * OBS_DIM,), np.float32)
        else:
            self.action_space = spaces.Discrete(a)
            self.observation_space = spaces.Box(0.0, 1.0, (OBS_DIM,), np.float32)
        self._start()

    # -- construction ------------------------------------------------------------------------------------
    def _precompute(self) -> None:
        """Masks, nearest allowed actions, observation rows and per-action param savings of every decision, so a
        step is array ops."""
        spec, task, codec = self.teacher_spec, self.task, self.task.codec
        rows = {r.unit.name: r for r in spec.shapes()}
        teacher_params = spec.params
        base_params = task.student_spec({}).params  # the class subset's classifier alone already saves a little
        n, k = len(self.decisions), len(task.width_choices)
        self._masks = codec.masks(self.decisions)
        joint = self._masks["joint"]
        self._mask_lists = {name: m.tolist() for name, m in self._masks.items()}  # fast scalar lookups
        self._nearest = {name: [[codec.nearest(m[j], a, name) for a in range(m.shape[1])] for j in range(n)]
                         for name, m in self._masks.items()}

        savings = np.zeros(joint.shape)
        for j, d in enumerate(self.decisions):
            for a in np.flatnonzero(joint[j]):
                student = task.student_spec({d.name: self.action_choices[a]})
                savings[j, a] = (base_params - student.params) / teacher_params
        self._savings = savings.tolist()
        self._start_kept = base_params / teacher_params

        feats = np.zeros((n, OBS_DIM), dtype=np.float32)
        self._shares = []
        height = spec.input_size[0]
        for j, d in enumerate(self.decisions):
            row, unit = rows[d.unit], spec.unit(d.unit)
            kind = "stage" if d.kind == "stage" else unit.obs_kind
            share = sum(rows[m].params for m in (d.members or (d.unit,))) / teacher_params
            self._shares.append(share)
            f = feats[j]
            if kind:
                f[_F[f"is_{kind}"]] = 1.0
            for name, value in unit.obs_features().items():
                f[_F[name]] = value
            f[_F["log_channels"]] = math.log2(d.channels) / 12
            f[_F["log_in_channels"]] = math.log2(row.inp[0]) / 12
            f[_F["spatial"]] = (row.out[1] if len(row.out) == 3 else 1) / height
            f[_F["position"]] = j / (n - 1) if n > 1 else 0.0
            f[_F["removable"]] = joint[j, 0]
            f[_F["shrinkable"]] = joint[j, 1:k].any()
            f[_F["kernel_shrinkable"]] = codec.offers_form(d, "kernel_1x1")
            f[_F["param_share"]] = share
        feats[:, _F["params_kept"]] = self._start_kept
        feats[:, _F["prev_width"]] = 1.0
        np.clip(feats, 0.0, 1.0, out=feats)
        shrink_rows = feats.copy()
        shrink_rows[:, _F["pass"]] = 1.0
        self._rows = {"removal": feats, "joint": feats, "shrink": shrink_rows}
        self._flat_obs = feats.reshape(-1).copy()
        self._removal_plan = [j for j in range(n) if joint[j, 0]]
        self._shrink_candidates = [j for j in range(n) if self._masks["shrink"][j].sum() > 1]

    def student_spec(self, choices: Mapping[str, Choice]) -> NetSpec:
        """The student spec of ``choices`` (decision name -> "remove" | width | Keep) under the task's channel
        rounding and class subset; choices the teacher does not allow raise ``ActionError``."""
        return self.task.student_spec(choices)

    # -- episode state -----------------------------------------------------------------------------------
    def _start(self) -> None:
        """Begin a new episode: nothing decided, the first step of the first pass."""
        self._actions: list[int | None] = [None] * len(self.decisions)
        self._kept = self._start_kept
        self._prev = 1.0
        self._done = False
        self._masked = 0
        self._last: dict[str, Any] | None = None
        self._pos = 0
        if self.stages == "joint" or self._one_shot:
            self._pass, self._plan = "joint", list(range(len(self.decisions)))
        elif self._removal_plan:
            self._pass, self._plan = "removal", self._removal_plan
        else:
            self._pass, self._plan = "shrink", self._shrink_candidates

    @property
    def current_decision(self) -> Decision | None:
        """The decision the next sequential step makes (None when the episode is over or in one-shot mode)."""
        if self._done or self._one_shot:
            return None
        return self.decisions[self._plan[self._pos]]

    @property
    def steps_left(self) -> int:
        """Steps left in this episode, the current one included; in the removal pass this assumes no further
        removals (each removal of a shrinkable unit shortens the shrink pass by one)."""
        if self._done:
            return 0
        if self._one_shot:
            return 1
        left = len(self._plan) - self._pos
        if self._pass == "removal":
            left += len(self._shrink_plan(self._actions))
        return left

    @property
    def current_pass(self) -> str:
        """The pass of the current step: "removal", "shrink" or "joint" (always "joint" in one-shot mode)."""
        return self._pass

    def action_of(self, choice: Choice) -> int:
        """The action index of a choice: "remove", a width of ``width_choices`` or a ``Keep`` (e.g.
        ``Keep(width, kernel=1)``)."""
        return self.task.codec.index(choice)

    def action_masks(self) -> np.ndarray:
        """Allowed actions of the current step (one-shot: all decisions' masks concatenated)."""
        if self._one_shot:
            return self._masks["joint"].reshape(-1).copy()
        if self._done:  # nothing left to decide: offer only "keep at width 1.0", so a mask is never empty
            mask = np.zeros(len(self.action_choices), dtype=bool)
            mask[self.task.codec.keep_action] = True
            return mask
        return self._masks[self._pass][self._plan[self._pos]].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode; ``info`` holds the layer table (see the class docstring)."""
        if seed is None and self._np_random is None:
            seed = self._seed
        super().reset(seed=seed)
        self._start()
        return self._observation(), {"layer_table": self.layer_table(), "n_decisions": len(self.decisions),
                                     "stages": self.stages}

    def layer_table(self) -> list[dict[str, Any]]:
        """One row per decision, in network order (a new list on every call)."""
        table = []
        for j, d in enumerate(self.decisions):
            unit = self.teacher_spec.unit(d.unit)
            table.append({
                "name": d.name, "kind": d.kind, "unit": d.unit, "unit_type": unit.type, "channels": d.channels,
                "kernel": getattr(unit, "kernel", 1), "stride": getattr(unit, "stride", 1),
                "removable": bool(self._masks["joint"][j, 0]),
                "shrinkable": bool(self._rows["joint"][j, _F["shrinkable"]]),
                "kernel_shrinkable": bool(self._rows["joint"][j, _F["kernel_shrinkable"]]),
                "param_share": self._shares[j], "features": self._rows["joint"][j].tolist(),
            })
        return table

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide the current decision (one-shot: all of them); the last step scores the student."""
        self._check_running()
        if self._one_shot:
            actions, masked, invalid = self._one_shot_actions(action)
            if invalid:
                return self._end_invalid(invalid)
            self._masked = masked
            self._actions = actions
            self._kept -= sum(self._savings[j][a] for j, a in enumerate(self._actions))
            return self._finish()
        j, a, masked, invalid = self._sequential_action(action)
        if invalid:
            return self._end_invalid(invalid)
        self._masked += masked
        self._actions[j] = a
        self._kept -= self._savings[j][a]
        self._prev = self._action_width[a]
        self._pos += 1
        if self._pos == len(self._plan):
            if self._pass != "removal":
                return self._finish()
            self._pass, self._pos = "shrink", 0
            self._plan = self._shrink_plan(self._actions)
            if not self._plan:
                return self._finish()
        return self._observation(), 0.0, False, False, {}

    def peek_step(self, action: Any) -> tuple[bool, dict[str, Choice] | None]:
        """What :meth:`step` would do with ``action`` now, without doing it: ``(ends, choices)``, whether the step
        ends the episode and, when it ends on a student, that student's choices (what :meth:`prefetch` takes;
        None when the episode goes on or a masked action ends it under ``masked_action="penalty"``). Lets an agent
        play several episodes up to their last step and have their students scored concurrently."""
        self._check_running()
        if self._one_shot:
            actions, _, invalid = self._one_shot_actions(action)
            return True, None if invalid else self._choices_of(actions)
        j, a, _, invalid = self._sequential_action(action)
        if invalid:
            return True, None
        if self._pos + 1 < len(self._plan):
            return False, None
        actions = [*self._actions]
        actions[j] = a
        if self._pass == "removal" and self._shrink_plan(actions):
            return False, None
        return True, self._choices_of(actions)

    def _check_running(self) -> None:
        if self._done:
            raise RuntimeError("the episode is over; call reset() before step()")

    def _sequential_action(self, action: Any) -> tuple[int, int, bool, str | None]:
        """The current step's decision index, the action taken (a masked one mapped to the nearest allowed one),
        whether it was mapped, and the reason when the action ends the episode as invalid (penalty mode)."""
        a = self._check_action(action)
        j = self._plan[self._pos]
        if self._mask_lists[self._pass][j][a]:
            return j, a, False, None
        if self.masked_action == "penalty":
            return j, a, False, self._masked_reason(j, a)
        return j, self._nearest[self._pass][j][a], True, None

    def _one_shot_actions(self, action: Any) -> tuple[list[int], int, str | None]:
        """A one-shot action's per-decision actions (masked ones mapped to the nearest allowed ones), how many were
        mapped, and the reason when the action ends the episode as invalid (penalty mode)."""
        n, a_count = len(self.decisions), len(self.action_choices)
        actions = np.asarray(action)
        if actions.shape != (n,) or actions.dtype.kind not in "iu" or actions.min() < 0 or actions.max() >= a_count:
            raise ValueError(f"a one-shot action is an integer array of shape ({n},) with values in "
                             f"[0, {a_count}); got {action!r}")
        allowed = self._masks["joint"][np.arange(n), actions]
        if allowed.all():
            return actions.tolist(), 0, None
        if self.masked_action == "penalty":
            j = int(np.flatnonzero(~allowed)[0])
            return actions.tolist(), 0, self._masked_reason(j, int(actions[j]))
        return [self._nearest["joint"][j][a] for j, a in enumerate(actions.tolist())], int((~allowed).sum()), None

    def _shrink_plan(self, actions: list[int | None]) -> list[int]:
        """The shrink pass that follows the removal pass's ``actions``: the shrinkable decisions kept."""
        return [i for i in self._shrink_candidates if actions[i] != 0]

    def _check_action(self, action: Any) -> int:
        """The sequential action as an int; ValueError when it is not an element of the action space."""
        if isinstance(action, (int, np.integer)) or (
                isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu"):
            a = int(action)
            if 0 <= a < len(self.action_choices):
                return a
        raise ValueError(f"action must be an integer in [0, {len(self.action_choices)}) ({self.task.codec.layout()}); "
                         f"got {action!r}")

    def _masked_reason(self, j: int, a: int) -> str:
        allowed = [self._label(i) for i in np.flatnonzero(self._masks[self._pass][j])]
        return (f"action {a} ({self._label(a)}) is not allowed for decision {self.decisions[j].name!r} in the "
                f"{self._pass} pass; allowed: {allowed}")

    def _label(self, a: int) -> str:
        return self.task.codec.label(a)

    def _observation(self) -> np.ndarray:
        if self._one_shot:
            return self._flat_obs.copy()
        obs = self._rows[self._pass][self._plan[self._pos]].copy()
        obs[_F["params_kept"]] = min(max(self._kept, 0.0), 1.0)
        obs[_F["prev_width"]] = self._prev
        return obs

    def _terminal_observation(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        if not self._one_shot:
            obs[_F["params_kept"]] = min(max(self._kept, 0.0), 1.0)
            obs[_F["prev_width"]] = self._prev
        return obs

    def choices(self) -> dict[str, Choice]:
        """The choices made so far, decision name -> "remove" | width | Keep (undecided: absent)."""
        return self._choices_of(self._actions)

    def _choices_of(self, actions: list[int | None]) -> dict[str, Choice]:
        return {d.name: self.action_choices[a] for d, a in zip(self.decisions, actions) if a is not None}

    # -- scoring -----------------------------------------------------------------------------------------
    def evaluate_choices(self, choices: Mapping[str, Choice]) -> dict[str, Any]:
        """Score and reward the student of ``choices`` (decision name -> "remove" | width | Keep) outside an
        episode, e.g. a hand-designed or uniform-width reference; returns the terminal-info record. Choices the
        teacher does not allow raise ``ActionError``."""
        record = copy.deepcopy(self.scorer.score(self.task.student_spec(choices)))
        return {**record, "reward": float(self.reward_function()(record))}

    def prefetch(self, choices: Mapping[str, Choice]) -> Future:
        """Start scoring the student of ``choices`` without waiting (a parallel scorer works on it meanwhile);
        returns the scorer's future. The next episode that ends on these choices takes this future's record as its
        own (the same ``cache_hit`` and seconds as if it had asked for it itself); prefetching the same student
        twice serves two such episodes."""
        spec = self.task.student_spec(choices)
        future = self.scorer.submit(spec)
        self._prefetched.setdefault(spec.hash(), []).append(future)
        return future

    def _finish(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score and reward the student of the choices made (a prefetched one: its record)."""
        choices = self.choices()
        spec = self.task.student_spec(choices)
        waiting = self._prefetched.get(spec.hash(), [])
        future = waiting.pop(0) if waiting else self.scorer.submit(spec)
        if not waiting:
            self._prefetched.pop(spec.hash(), None)
        record = copy.deepcopy(future.result())
        return self._end(record, self._reward(record), choices)

    def reward_function(self) -> RewardFn:
        """The env's reward, a calibrated one fitted to the task on first use (scoring its uniform reference
        students once per task and fidelity; see :mod:`ddc_env.calibration`)."""
        if not self._calibrated:
            self.reward_fn = calibrated(self.reward_fn, self.scorer)
            self._calibrated = True
        return self.reward_fn

    def _reward(self, record: Mapping[str, Any]) -> float:
        reward = self.reward_function()
        schedule = getattr(reward, "at_episode", None)
        if schedule is not None:
            schedule(self._episodes)
        return float(reward(record))

    def _end_invalid(self, reason: str) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self._end(self.scorer.invalid_record(reason), INVALID_REWARD, self.choices())

    def _end(self, record: dict[str, Any], reward: float, choices: Mapping[str, Choice]
             ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # every choice as a float width (0.0 = removed), so each info key keeps one type across episodes and
        # gymnasium's vector envs can batch the infos
        full = {d.name: 1.0 for d in self.decisions}
        full.update(choices)
        info = {**record, "reward": reward, "choices": {name: width_of(c) for name, c in full.items()},
                "choice_tokens": self.task.codec.encode(full), "masked_actions": self._masked}
        self._done, self._last = True, info
        self._episodes += 1
        return self._terminal_observation(), reward, True, False, copy.deepcopy(info)

    # -- rendering, pickling, closing --------------------------------------------------------------------
    def render(self) -> str | None:
        """In "ansi" mode: a text table of decisions, teacher channels and choices, then the student's metrics."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' to DDCEnv")
            return None
        current = self.current_decision
        lines = [f"{'decision':<16}{'channels':>9}  choice"]
        for d, a in zip(self.decisions, self._actions):
            choice = "-" if a is None else self._label(a)
            mark = f"   <- {self._pass} pass" if current is not None and d.name == current.name else ""
            lines.append(f"{d.name:<16}{d.channels:>9}  {choice}{mark}")
        if self._last is not None:
            r = self._last
            lines.append(f"status {r['status']}" + (f": {r['reason']}" if r.get("reason") else ""))
            if r["status"] == "ok":
                lines.append(f"val_acc {r['val_acc']:.4f} (teacher {r['teacher_val_acc']:.4f})  params "
                             f"{r['params']:,} ({r['param_ratio']:.3f})  flops {r['flops']:,} "
                             f"({r['flop_ratio']:.3f})" + (f"  latency {r['latency_ms']:.3f} ms "
                                                           f"({r['latency_ratio']:.3f})"
                                                           if r.get("latency_ms") is not None else ""))
            lines.append(f"reward {r['reward']:.4f}")
        return "\n".join(lines) + "\n"

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "scorer": self._given_scorer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], scorer=state["scorer"])

    def close(self) -> None:
        """Release the scorer's connections and workers (a live scorer reopens its store on the next use)."""
        self.scorer.close()


__all__ = ["ACTION_MODES", "FEATURES", "INVALID_REWARD", "MASKED_ACTIONS", "OBS_DIM", "STAGES", "DDCEnv",
           "EnvConfig", "check_behaviour", "make_config", "make_live_scorer"]
