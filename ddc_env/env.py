"""The Gymnasium environment: an agent removes and shrinks the layers of a teacher CNN, one decision per step
(or all at once); the student is built from the teacher's weights, distilled briefly and rewarded.

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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .arch import (N2N_WIDTHS, REMOVE, Block, Choice, Conv, Decision, Keep, Linear, NetSpec,
                   apply_decisions, decision_table)
from .data import DataBundle, DataConfig, load_data
from .evaluate import LATENCY_MODES, Evaluator, Fidelity, make_fidelity
from .models.builders import MODELS
from .models.checkpoints import TeacherCheckpoint, load_teacher
from .models.teacher import TeacherRecipe, find_teacher, train_teacher
from .paths import teachers_dir
from .rewards import RewardFn, make_reward
from .train import OptimConfig

ACTION_MODES = ("sequential", "one_shot")
STAGES = ("two_stage", "joint")
RENDER_MODES = ("ansi",)
INVALID_REWARD = -1.0
FEATURES = ("is_conv", "is_block", "is_linear", "is_stage", "kernel", "stride", "log_channels",
            "log_in_channels", "spatial", "position", "pass", "removable", "shrinkable", "kernel_shrinkable",
            "param_share", "params_kept", "prev_width")
OBS_DIM = len(FEATURES)
_F = {name: i for i, name in enumerate(FEATURES)}
_DATA_KWARGS = ("num_classes", "in_channels", "input_size")  # model kwargs that come from the data
# Rough CPU training throughput for the up-front time estimate of an "auto" teacher, in FLOPs per second
# (forward + backward = 3x forward): the shared ResNet-18 teacher took 4,534 s on 2 CPU cores for 450k images.
_CPU_TRAIN_FLOPS_PER_S = 3e11


@dataclass(frozen=True)
class EnvConfig:
    """Every argument of :class:`DDCEnv`; see its docstring ("Arguments") for what each one means."""

    model: str = "resnet18"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    teacher: str | os.PathLike[str] | TeacherCheckpoint = "auto"
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    classes: str | tuple[str | int, ...] | None = None
    max_train: int | None = None
    max_val: int | None = None
    fidelity: str | Mapping[str, Any] | Fidelity = "fast"
    reward: str | Mapping[str, Any] | RewardFn = "ddc"
    action_mode: str = "sequential"
    stages: str = "two_stage"
    width_choices: tuple[float, ...] = N2N_WIDTHS
    kernel_shrink: bool = False
    channel_round: int = 8
    min_channels: int = 8
    latency: str = "measured"
    latency_batch_size: int = 1
    latency_threads: int | None = None
    device: str = "auto"
    store: str | None = None
    run: str | None = None
    seed: int | None = None
    render_mode: str | None = None
    teacher_epochs: int | None = None
    teacher_recipe: TeacherRecipe | Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; allowed: {sorted(MODELS)}")
        for name, allowed in (("action_mode", ACTION_MODES), ("stages", STAGES), ("latency", LATENCY_MODES),
                              ("render_mode", (None, *RENDER_MODES))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; allowed: {list(allowed)}")
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "width_choices", _check_widths(self.width_choices))
        for name in ("channel_round", "min_channels", "latency_batch_size", "latency_threads", "teacher_epochs",
                     "max_train", "max_val"):
            value = getattr(self, name)
            optional = name in ("latency_threads", "teacher_epochs", "max_train", "max_val")
            if not (optional and value is None) and (isinstance(value, bool) or not isinstance(value, int)
                                                     or value < 1):
                raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, "
                                 f"got {value!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be None or an integer, got {self.seed!r}")
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))
        for name in ("data_dir", "store"):
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        if not isinstance(self.teacher, (str, os.PathLike, TeacherCheckpoint)):
            raise ValueError(f"teacher must be 'auto', a checkpoint path or a TeacherCheckpoint, "
                             f"got {type(self.teacher).__name__}")
        make_fidelity(dict(self.fidelity) if isinstance(self.fidelity, Mapping) else self.fidelity)
        self.reward_fn()
        self.recipe()

    def data_config(self) -> DataConfig:
        """The data the students are trained and rewarded on."""
        return DataConfig(self.dataset, self.data_dir, self.download, self.classes, max_train=self.max_train,
                          max_val=self.max_val)

    def teacher_data_config(self) -> DataConfig:
        """The data an "auto" teacher is trained on: all classes of the dataset (a class subset is compressed
        from the whole dataset's teacher, as in DDC), same split and caps."""
        return dataclasses.replace(self.data_config(), classes=None)

    def recipe(self) -> TeacherRecipe:
        """The training recipe of an "auto" teacher: ``teacher_recipe`` with ``teacher_epochs`` applied."""
        recipe = self.teacher_recipe
        if isinstance(recipe, Mapping):
            allowed = [f.name for f in dataclasses.fields(TeacherRecipe)]
            unknown = sorted(set(recipe) - set(allowed))
            if unknown:
                raise ValueError(f"unknown teacher_recipe field(s) {unknown}; allowed: {allowed}")
            kwargs = dict(recipe)
            if isinstance(kwargs.get("optim"), Mapping):
                kwargs["optim"] = OptimConfig(**kwargs["optim"])
            recipe = TeacherRecipe(**kwargs)
        elif recipe is None:
            recipe = TeacherRecipe()
        elif not isinstance(recipe, TeacherRecipe):
            raise ValueError(f"teacher_recipe must be None, a dict or a TeacherRecipe, got {recipe!r}")
        return recipe if self.teacher_epochs is None else dataclasses.replace(recipe, epochs=self.teacher_epochs)

    def reward_fn(self) -> RewardFn:
        """The reward; a "ddc" reward uses the FLOP ratio as its time ratio when ``latency="flops"``."""
        return make_reward(_reward_for_latency(self.reward, self.latency))


def _check_widths(widths: Any) -> tuple[float, ...]:
    try:
        out = tuple(float(w) for w in widths)
    except (TypeError, ValueError):
        raise ValueError(f"width_choices must be a sequence of numbers, got {widths!r}") from None
    if not out or any(not 0.0 < w <= 1.0 for w in out) or 1.0 not in out or list(out) != sorted(set(out)):
        raise ValueError(f"width_choices must be strictly increasing numbers in (0, 1] that include 1.0, "
                         f"got {widths!r}; e.g. {N2N_WIDTHS}")
    return out


def _reward_for_latency(spec: Any, latency: str) -> Any:
    """``spec`` with every "ddc" reward in it timing by FLOPs when latency is not measured."""
    if latency == "measured":
        return spec
    if spec == "ddc":
        return {"name": "ddc", "latency": latency}
    if isinstance(spec, Mapping) and spec.get("name") == "ddc":
        return {"latency": latency, **spec}
    if isinstance(spec, Mapping) and spec.get("name") == "budget" and "base" in spec:
        return {**spec, "base": _reward_for_latency(spec["base"], latency)}
    return spec


def make_config(config: EnvConfig | None = None, **overrides: Any) -> EnvConfig:
    """``config`` (default: all defaults) with ``overrides``; unknown names raise a ValueError listing all."""
    allowed = [f.name for f in dataclasses.fields(EnvConfig)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown DDCEnv argument(s) {unknown}; allowed: {allowed}")
    if config is not None and not isinstance(config, EnvConfig):
        raise ValueError(f"config must be an EnvConfig or None, got {type(config).__name__}")
    return dataclasses.replace(config or EnvConfig(), **overrides)


class DDCEnv(gym.Env):
    """Data-driven compression of a trained CNN (N2N / DDC) as a Gymnasium environment.

    ## Description

    A trained *teacher* CNN is given. The agent walks through the teacher's decision points (conv layers,
    residual blocks, hidden fully-connected layers and ResNet stages, whose blocks share one residual
    width) and decides for each whether to **remove** it or **keep** it at a fraction of its channels
    (optionally with its kernel shrunk to 1x1). At the end of the episode the *student* is built with the
    teacher's weights (largest-L1 filters), its BatchNorm statistics are re-estimated, it is trained briefly
    by knowledge distillation at the chosen fidelity, measured (validation accuracy on a split the teacher
    never trained on, params, FLOPs, latency, size) and rewarded. Evaluations are cached in a results store,
    so a repeated student costs nothing. With ``classes`` a subset of the teacher's classes, the student only
    has to serve those classes (DDC's data-driven compression).

    ## Action Space

    ``action_mode="sequential"`` (default): ``Discrete(1 + K)`` (``1 + 2K`` with ``kernel_shrink=True``),
    ``K = len(width_choices)``:

    - 0: remove the unit
    - 1..K: keep it at ``width_choices[k - 1]`` of the teacher's channels (``width_choices[-1]`` is 1.0)
    - K+1..2K: the same widths with the kernel shrunk to 1x1 (only with ``kernel_shrink=True``)

    ``action_masks()`` gives the allowed actions of the current step (for MaskablePPO): removal only where the
    unit is removable (never the first conv, downsampling units, projection blocks, stages or the classifier),
    widths below 1 only where the width can shrink, width 1.0 always, kernel options only on odd kxk convs.
    With ``stages="two_stage"`` (N2N) a removal pass over the removable decisions (remove or keep at 1.0) is
    followed by a shrink pass over the shrinkable decisions that were kept (widths and kernels, no removal);
    with ``stages="joint"`` there is one step per decision with all its options.

    ``action_mode="one_shot"``: one step, ``MultiDiscrete([1 + K (+ K)] * n_decisions)`` over all decisions
    in network order; ``action_masks()`` is the concatenation of the per-decision masks (the MultiDiscrete
    format of MaskablePPO) and ``stages`` plays no role. The same choices give the same student (same spec
    hash) in every mode and stage order.

    An action outside the action space raises a ``ValueError``. An action inside it that the mask forbids
    ends the episode with the invalid penalty: reward -1.0, ``info["status"] == "invalid"`` and
    ``info["reason"]`` naming the decision and the action.

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
    by default DDC's ``s(15(A/A_t - 0.9)) * s(-15(T/T_t - 0.3)) * s(-15(P/P_t - 0.6))`` (logistic ``s``;
    ``T`` is measured latency, or FLOPs with ``latency="flops"``), or N2N's ``(A/A_t) C (2 - C)``,
    ``C = 1 - P/P_t``, a budget-constrained reward or any callable (see :func:`ddc_env.rewards.make_reward`).
    A student whose training diverged gets -1.0 from the built-in rewards; a masked action gets -1.0.

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
    ``latency_ratio``, ``spec`` (the student's JSON), ``spec_hash``, ``eval_seconds``, ``train_seconds``,
    ``cache_hit``, ``fidelity``, plus ``reward``, ``choices`` (decision name -> the width kept, 0.0 for a
    removed unit) and, with ``kernel_shrink=True``, ``kernel_1x1`` (decision name -> whether its kernel was
    shrunk). Every info key keeps one type across episodes, so gymnasium's vector envs can batch the infos.

    ## Arguments

    ``DDCEnv(config: EnvConfig | None = None, **overrides)``, e.g. ``gym.make("DDC-ResNet18-CIFAR10",
    fidelity="zero")``; an unknown argument raises a ValueError listing the allowed ones.

    - ``model``: the zoo architecture of the teacher (``ddc_env.models.MODELS``); ``model_kwargs`` (e.g.
      ``{"stem": "imagenet"}``) complete it for an "auto" teacher (a checkpoint brings its own architecture).
    - ``teacher``: "auto" (the cached teacher of ``model`` on the whole dataset, trained now if there is none,
      with ``teacher_epochs`` / ``teacher_recipe``), a checkpoint path, or a loaded ``TeacherCheckpoint``.
    - ``dataset``, ``data_dir``, ``download``, ``classes``, ``max_train``, ``max_val``: the data
      (see :class:`ddc_env.data.DataConfig`); ``classes`` may be a subset of the teacher's classes.
    - ``fidelity``: how students are trained and measured: "smoke", "zero", "fast", "standard", "n2n_paper",
      "ddc_paper", a dict of overrides ``{"name": "fast", "epochs": 2}`` or a ``Fidelity``.
    - ``reward``: "ddc", "n2n", a dict ``{"name": "budget", "max_param_ratio": 0.2}`` or a callable.
    - ``action_mode`` ("sequential" | "one_shot"), ``stages`` ("two_stage" | "joint"), ``width_choices``
      (increasing, in (0, 1], with 1.0), ``kernel_shrink``, ``channel_round``, ``min_channels``.
    - ``latency`` ("measured" | "flops", deterministic), ``latency_batch_size``, ``latency_threads``,
      ``device`` ("auto" | "cpu" | "cuda").
    - ``store``: path of the SQLite results store shared by every process of a run (None: in memory);
      ``run``: the run name written with each evaluation.
    - ``seed``: seeds ``np_random`` at the first ``reset()`` without a seed; ``render_mode``: None | "ansi".

    Pickling keeps the arguments only: an unpickled copy reloads data and teacher and starts a new episode,
    which is what subprocess vector envs need.

    ## Version History

    - v0: initial version (no version suffix in the ids).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(self, config: EnvConfig | None = None, **overrides: Any) -> None:
        self.config = cfg = make_config(config, **overrides)
        self.render_mode = cfg.render_mode
        self.data: DataBundle = load_data(cfg.data_config())
        self.teacher: TeacherCheckpoint = self._load_teacher()
        spec = self.teacher_spec = self.teacher.spec
        self.class_indices = _student_classes(self.teacher, self.data)
        self.evaluator = Evaluator(self.teacher.net, spec, self.data, make_fidelity(_plain(cfg.fidelity)),
                                   teacher_id=self.teacher.meta.get("sha256"), device=cfg.device,
                                   latency=cfg.latency, latency_batch_size=cfg.latency_batch_size,
                                   latency_threads=cfg.latency_threads, store=cfg.store, run=cfg.run)
        self.reward_fn: RewardFn = cfg.reward_fn()

        widths = cfg.width_choices
        self.action_choices: tuple[Choice, ...] = (REMOVE, *widths, *(
            (Keep(w, kernel=1) for w in widths) if cfg.kernel_shrink else ()))
        self._action_width = [0.0, *widths, *(widths if cfg.kernel_shrink else ())]
        self.decisions: tuple[Decision, ...] = tuple(d for d in decision_table(spec) if self._offers(d))
        if not self.decisions:
            raise ValueError(f"the {spec.arch} teacher offers no decision with width_choices={widths} and "
                             f"kernel_shrink={cfg.kernel_shrink}")
        self._precompute()

        n, a = len(self.decisions), len(self.action_choices)
        self._one_shot = cfg.action_mode == "one_shot"
        if self._one_shot:
            self.action_space: spaces.Space = spaces.MultiDiscrete([a] * n)
            self.observation_space: spaces.Space = spaces.Box(0.0, 1.0, (n * OBS_DIM,), np.float32)
        else:
            self.action_space = spaces.Discrete(a)
            self.observation_space = spaces.Box(0.0, 1.0, (OBS_DIM,), np.float32)
        self._start()

    # -- construction ------------------------------------------------------------------------------------
    def _load_teacher(self) -> TeacherCheckpoint:
        """The teacher checkpoint the config names, checked against the model and the data."""
        cfg = self.config
        if isinstance(cfg.teacher, TeacherCheckpoint):
            ckpt = cfg.teacher
        elif isinstance(cfg.teacher, str) and cfg.teacher == "auto":
            ckpt = self._auto_teacher()
        else:
            ckpt = load_teacher(cfg.teacher)
        if ckpt.meta.get("model", cfg.model) != cfg.model:
            raise ValueError(f"the teacher {ckpt.path} is a {ckpt.meta['model']}, but model={cfg.model!r}; "
                             f"pass model={ckpt.meta['model']!r}")
        data_shape = (self.data.in_channels, self.data.image_size)
        if (ckpt.spec.in_channels, ckpt.spec.input_size) != data_shape:
            raise ValueError(f"the teacher takes {ckpt.spec.in_channels}x{ckpt.spec.input_size} inputs but "
                             f"{cfg.dataset!r} images are {data_shape[0]}x{data_shape[1]}")
        return ckpt

    def _auto_teacher(self) -> TeacherCheckpoint:
        """The cached teacher of ``model`` on the whole dataset, or a newly trained one."""
        cfg = self.config
        data_cfg, recipe = cfg.teacher_data_config(), cfg.recipe()
        path = find_teacher(cfg.model, data_cfg, recipe=recipe)
        if path is not None:
            return load_teacher(path)
        data = self.data if cfg.classes is None else load_data(data_cfg)
        from_data = {"num_classes": data.num_classes, "in_channels": data.in_channels,
                     "input_size": data.image_size}
        kwargs = dict(cfg.model_kwargs)
        for key in _DATA_KWARGS:
            if key in kwargs and _as_tuple(kwargs.pop(key)) != _as_tuple(from_data[key]):
                raise ValueError(f"model_kwargs[{key!r}]={cfg.model_kwargs[key]!r} does not match the data "
                                 f"({cfg.dataset}: {key}={from_data[key]!r})")
        spec = MODELS[cfg.model](**kwargs, **from_data)
        images = len(data.train) * recipe.epochs
        hours = images * 3 * spec.flops / _CPU_TRAIN_FLOPS_PER_S / 3600
        warnings.warn(
            f"DDCEnv: no cached {cfg.model} teacher for {cfg.dataset} in {teachers_dir()}; training one now "
            f"({recipe.epochs} epochs, {images:,} images; on 2 CPU cores roughly {_duration(hours)}, much less "
            f"on a GPU). It is cached for later runs; pass teacher=<checkpoint path> to use your own.",
            UserWarning, stacklevel=4)
        return train_teacher(cfg.model, data_cfg, recipe, model_kwargs=kwargs, device=cfg.device)

    def _offers(self, d: Decision) -> bool:
        """Whether decision ``d`` has any option besides keeping the unit as it is."""
        cfg = self.config
        return d.removable or (d.shrinkable and cfg.width_choices[0] < 1.0) or (
            cfg.kernel_shrink and d.kernel_shrinkable)

    def _allowed(self, d: Decision) -> list[bool]:
        """The joint mask of decision ``d``: which action indices it allows."""
        widths = self.config.width_choices
        keep = [w == 1.0 or d.shrinkable for w in widths]
        kernel = [k and d.kernel_shrinkable for k in keep] if self.config.kernel_shrink else []
        return [d.removable, *keep, *kernel]

    def _precompute(self) -> None:
        """Masks, observation rows and per-action param savings of every decision, so a step is array ops."""
        spec, cfg = self.teacher_spec, self.config
        rows = {r.unit.name: r for r in spec.shapes()}
        teacher_params = spec.params
        base_params = self.student_spec({}).params  # the class subset's classifier alone already saves a little
        n, k = len(self.decisions), len(cfg.width_choices)
        joint = np.array([self._allowed(d) for d in self.decisions], dtype=bool)
        keep_only = np.zeros_like(joint)
        keep_only[:, 0], keep_only[:, k] = joint[:, 0], True  # remove or keep at width 1.0
        shrink = joint.copy()
        shrink[:, 0] = False
        self._masks = {"joint": joint, "removal": keep_only, "shrink": shrink}
        self._mask_lists = {name: m.tolist() for name, m in self._masks.items()}  # fast scalar lookups

        savings = np.zeros(joint.shape)
        for j, d in enumerate(self.decisions):
            for a in np.flatnonzero(joint[j]):
                student = self.student_spec({d.name: self.action_choices[a]})
                savings[j, a] = (base_params - student.params) / teacher_params
        self._savings = savings.tolist()
        self._start_kept = base_params / teacher_params

        feats = np.zeros((n, OBS_DIM), dtype=np.float32)
        self._shares = []
        height = spec.input_size[0]
        for j, d in enumerate(self.decisions):
            row, unit = rows[d.unit], spec.unit(d.unit)
            kind = "stage" if d.kind == "stage" else {Conv: "conv", Block: "block", Linear: "linear"}[type(unit)]
            share = sum(rows[m].params for m in (d.members or (d.unit,))) / teacher_params
            self._shares.append(share)
            f = feats[j]
            f[_F[f"is_{kind}"]] = 1.0
            if not isinstance(unit, Linear):
                f[_F["kernel"]], f[_F["stride"]] = unit.kernel / 7, unit.stride / 2
            f[_F["log_channels"]] = math.log2(d.channels) / 12
            f[_F["log_in_channels"]] = math.log2(row.inp[0]) / 12
            f[_F["spatial"]] = (row.out[1] if len(row.out) == 3 else 1) / height
            f[_F["position"]] = j / (n - 1) if n > 1 else 0.0
            f[_F["removable"]] = joint[j, 0]
            f[_F["shrinkable"]] = joint[j, 1:k].any()
            f[_F["kernel_shrinkable"]] = joint[j, k + 1:].any()
            f[_F["param_share"]] = share
        feats[:, _F["params_kept"]] = self._start_kept
        feats[:, _F["prev_width"]] = 1.0
        np.clip(feats, 0.0, 1.0, out=feats)
        shrink_rows = feats.copy()
        shrink_rows[:, _F["pass"]] = 1.0
        self._rows = {"removal": feats, "joint": feats, "shrink": shrink_rows}
        self._flat_obs = feats.reshape(-1).copy()
        self._removal_plan = [j for j in range(n) if joint[j, 0]]
        self._shrink_candidates = [j for j in range(n) if shrink[j].sum() > 1]

    def student_spec(self, choices: Mapping[str, Choice]) -> NetSpec:
        """The student spec of ``choices`` (decision name -> "remove" | width | Keep) under this env's channel
        rounding and class subset; choices the teacher does not allow raise ``ActionError``."""
        return apply_decisions(self.teacher_spec, choices, channel_round=self.config.channel_round,
                               min_channels=self.config.min_channels, class_indices=self.class_indices)

    # -- episode state -----------------------------------------------------------------------------------
    def _start(self) -> None:
        """Begin a new episode: nothing decided, the first step of the first pass."""
        self._actions: list[int | None] = [None] * len(self.decisions)
        self._kept = self._start_kept
        self._prev = 1.0
        self._done = False
        self._last: dict[str, Any] | None = None
        self._pos = 0
        if self.config.stages == "joint" or self._one_shot:
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
            left += sum(1 for i in self._shrink_candidates if self._actions[i] != 0)
        return left

    @property
    def current_pass(self) -> str:
        """The pass of the current step: "removal", "shrink" or "joint" (always "joint" in one-shot mode)."""
        return self._pass

    def action_of(self, choice: Choice) -> int:
        """The action index of a choice: "remove", a width of ``width_choices`` or ``Keep(width, kernel=1)``."""
        if isinstance(choice, Keep) and choice.kernel is None:
            choice = choice.width
        if not isinstance(choice, (str, Keep)):
            choice = float(choice)
        if choice not in self.action_choices:
            raise ValueError(f"{choice!r} is not an action of this env; actions: {list(self.action_choices)}")
        return self.action_choices.index(choice)

    def action_masks(self) -> np.ndarray:
        """Allowed actions of the current step (one-shot: all decisions' masks concatenated)."""
        if self._one_shot:
            return self._masks["joint"].reshape(-1).copy()
        if self._done:  # nothing left to decide: offer only "keep at width 1.0", so a mask is never empty
            mask = np.zeros(len(self.action_choices), dtype=bool)
            mask[len(self.config.width_choices)] = True
            return mask
        return self._masks[self._pass][self._plan[self._pos]].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode; ``info`` holds the layer table (see the class docstring)."""
        if seed is None and self._np_random is None:
            seed = self.config.seed
        super().reset(seed=seed)
        self._start()
        return self._observation(), {"layer_table": self.layer_table(), "n_decisions": len(self.decisions),
                                     "stages": self.config.stages}

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
        """Decide the current decision (one-shot: all of them); the last step evaluates the student."""
        if self._done:
            raise RuntimeError("the episode is over; call reset() before step()")
        if self._one_shot:
            return self._step_one_shot(action)
        a = self._check_action(action)
        j = self._plan[self._pos]
        if not self._mask_lists[self._pass][j][a]:
            return self._end_invalid(self._masked_reason(j, a))
        self._actions[j] = a
        self._kept -= self._savings[j][a]
        self._prev = self._action_width[a]
        self._pos += 1
        if self._pos == len(self._plan):
            if self._pass != "removal":
                return self._finish()
            self._pass, self._pos = "shrink", 0
            self._plan = [i for i in self._shrink_candidates if self._actions[i] != 0]
            if not self._plan:
                return self._finish()
        return self._observation(), 0.0, False, False, {}

    def _step_one_shot(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        n, a_count = len(self.decisions), len(self.action_choices)
        actions = np.asarray(action)
        if actions.shape != (n,) or actions.dtype.kind not in "iu" or actions.min() < 0 or actions.max() >= a_count:
            raise ValueError(f"a one-shot action is an integer array of shape ({n},) with values in "
                             f"[0, {a_count}); got {action!r}")
        allowed = self._masks["joint"][np.arange(n), actions]
        if not allowed.all():
            j = int(np.flatnonzero(~allowed)[0])
            return self._end_invalid(self._masked_reason(j, int(actions[j])))
        self._actions = actions.tolist()
        self._kept -= sum(self._savings[j][a] for j, a in enumerate(self._actions))
        return self._finish()

    def _check_action(self, action: Any) -> int:
        """The sequential action as an int; ValueError when it is not an element of the action space."""
        if isinstance(action, (int, np.integer)) or (
                isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu"):
            a = int(action)
            if 0 <= a < len(self.action_choices):
                return a
        raise ValueError(f"action must be an integer in [0, {len(self.action_choices)}) (0 = remove, then "
                         f"widths {list(self.config.width_choices)}"
                         f"{', then the same widths with 1x1 kernels' if self.config.kernel_shrink else ''}); "
                         f"got {action!r}")

    def _masked_reason(self, j: int, a: int) -> str:
        allowed = [self._label(i) for i in np.flatnonzero(self._masks[self._pass][j])]
        return (f"action {a} ({self._label(a)}) is not allowed for decision {self.decisions[j].name!r} in the "
                f"{self._pass} pass; allowed: {allowed}")

    def _label(self, a: int) -> str:
        choice = self.action_choices[a]
        return choice if isinstance(choice, str) else (
            f"width {choice.width:g}, 1x1 kernel" if isinstance(choice, Keep) else f"width {choice:g}")

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
        return {d.name: self.action_choices[a] for d, a in zip(self.decisions, self._actions) if a is not None}

    def evaluate_choices(self, choices: Mapping[str, Choice]) -> dict[str, Any]:
        """Evaluate and reward the student of ``choices`` (decision name -> "remove" | width | Keep) outside
        an episode, e.g. a hand-designed or uniform-width reference; returns the terminal-info record.
        Choices the teacher does not allow raise ``ActionError``."""
        record = copy.deepcopy(self.evaluator.evaluate(self.student_spec(choices)))
        return {**record, "reward": float(self.reward_fn(record))}

    def _finish(self) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Build, evaluate and reward the student of the choices made."""
        choices = self.choices()
        record = self.evaluate_choices(choices)
        return self._end(record, record.pop("reward"), choices)

    def _end_invalid(self, reason: str) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self._end(self.evaluator.invalid_record(reason), INVALID_REWARD, self.choices())

    def _end(self, record: dict[str, Any], reward: float, choices: Mapping[str, Choice]
             ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # every choice as a float width (0.0 = removed), so each info key keeps one type across episodes and
        # gymnasium's vector envs can batch the infos
        widths = {d.name: 1.0 for d in self.decisions}
        widths.update({name: _width_of(c) for name, c in choices.items()})
        info = {**record, "reward": reward, "choices": widths}
        if self.config.kernel_shrink:
            info["kernel_1x1"] = {d.name: isinstance(choices.get(d.name), Keep) for d in self.decisions}
        self._done, self._last = True, info
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
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])

    def close(self) -> None:
        """Release this process's connection to the results store (reopened on the next evaluation)."""
        if self.evaluator.store is not None:
            self.evaluator.store.close()


def _student_classes(teacher: TeacherCheckpoint, data: DataBundle) -> tuple[int, ...] | None:
    """The classifier rows a student keeps: None when it serves all the teacher's classes, else
    ``data.class_indices`` (a class subset of a teacher of the whole dataset)."""
    n = teacher.spec.num_classes
    wanted = tuple(data.class_indices)
    default = wanted if n == len(wanted) else tuple(range(n))
    teacher_classes = tuple(teacher.meta.get("class_indices", default))
    if teacher_classes == wanted:
        return None
    if teacher_classes == tuple(range(n)) and max(wanted) < n:
        return wanted
    raise ValueError(f"the teacher's classes {list(teacher_classes)} do not fit the data's classes {list(wanted)}: "
                     f"the data must have the teacher's classes, or a subset of the classes of a teacher trained "
                     f"on the whole dataset")


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _duration(hours: float) -> str:
    if hours * 60 < 1:
        return "under a minute"
    return f"{hours * 60:.0f} min" if hours < 2 else f"{hours:.0f} h"


def _width_of(choice: Choice) -> float:
    """The width a choice keeps: 0.0 for a removal."""
    return 0.0 if choice == REMOVE else float(choice.width if isinstance(choice, Keep) else choice)


__all__ = ["ACTION_MODES", "FEATURES", "INVALID_REWARD", "OBS_DIM", "STAGES", "DDCEnv", "EnvConfig", "make_config"]
