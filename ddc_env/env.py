"""The Gymnasium environment: an agent removes and shrinks the layers of a teacher CNN, one decision per step
(or all at once); the student is scored by the env's scorer (by default: built from the teacher's weights,
distilled briefly and measured) and rewarded.

:class:`CompressionEnv` is the episode logic every DDC env shares, on a task and a scorer; :class:`DDCEnv` is the live
env (its scorer trains students), :class:`~ddc_env.twins.DDCBenchEnv` the benchmark twin (its scorer reads a table).

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

from typing import Any

from .env_config import (ACTION_MODES, BEHAVIOUR, INVALID_REWARD, MASKED_ACTIONS, STAGES, EnvConfig, check_behaviour,
                         make_config, make_live_scorer)
from .episode import CompressionEnv
from .scoring import CachedScorer, LiveScorer, Scorer
from .task import describe_task, load_task
from .walk import FEATURES, OBS_DIM

__all__ = ["ACTION_MODES", "FEATURES", "INVALID_REWARD", "MASKED_ACTIONS", "OBS_DIM", "STAGES", "CompressionEnv",
           "DDCEnv", "EnvConfig", "check_behaviour", "make_config", "make_live_scorer"]


class DDCEnv(CompressionEnv):
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

    ``action_mode="continuous"`` (AMC's): one step per decision as in the sequential mode, each action a
    ``Box(0, 1, (1,))`` keep ratio: a ratio below ``remove_below`` (default 0.1) removes a removable unit, anything
    else keeps it at the allowed width nearest the ratio (the narrower on a tie; in the two-stage removal pass any
    other ratio means "keep"). Forms are not reachable in this mode. Each step's ``info`` holds ``keep_ratio`` (the
    action), ``width`` (what it became, 0.0 = removed) and ``clipped`` (whether the budget narrowed it).

    ``budget={"flops": r}`` (or ``"params"`` / ``"latency"``: the latency model's time; ``r`` in (0, 1]), in any
    mode: AMC's budget-constrained actions. Each decision's action is narrowed, when needed, to the widest allowed
    width that still lets the decisions after it, at their narrowest widths, meet ``r`` times the teacher's cost, so
    every student meets the budget; the terminal ``info["clipped_actions"]`` counts the narrowed actions. A budget
    even the narrowest student misses is refused when the env is made.

    An action outside the action space raises a ``ValueError``. An action inside it that the mask forbids is
    handled by ``masked_action``: ``"nearest"`` (default, what a generic RL library that ignores masks needs) takes
    the nearest allowed action instead (in the removal pass: any width means "keep", the width is decided in the
    shrink pass; elsewhere the allowed width closest to the asked one, "remove" counting as width 0) and counts it
    in ``info["masked_actions"]``; ``"penalty"`` (N2N) ends the episode with reward
    -1.0, ``info["status"] == "invalid"`` and ``info["reason"]`` naming the decision and the action.

    ## Observation Space

    Sequential and continuous modes: a float32 ``Box(0, 1, (17,))`` describing the current decision, normalised so that a
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
    ``C = 1 - P/P_t``, a budget-constrained reward whose epsilon the env anneals over its episodes, AMC's
    ``{"name": "amc"}`` (``-error * log(FLOPs)``; ``"objective": "error"``: ``-error``, for a ``budget``), or any
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
    ``masked_actions`` (and ``clipped_actions`` with a budget). Every info key keeps one type across episodes, so gymnasium's vector envs can batch the
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
    - ``action_mode`` ("sequential" | "one_shot" | "continuous"), ``budget`` (None, or one of ``{"params": r}``,
      ``{"flops": r}``, ``{"latency": r}``), ``remove_below`` (continuous mode), ``stages`` ("two_stage" | "joint"), ``masked_action``
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

    Making a live env is cheap: its spaces come from the teacher checkpoint's sidecar and the dataset catalog, and
    the teacher and the data load when the first student is scored (``env.scorer.prepare()`` loads them at once; a
    dataset outside the catalog, data not in local npz files, or an "auto" teacher not trained yet load at once).
    Pickling keeps the arguments only: an unpickled copy reloads data and teacher and starts a new episode,
    which is what subprocess vector envs need.

    ## Version History

    - v0: initial version. The ids carry Gymnasium's version suffix (``DDC-LeNet5-MNIST-v0``); the names without
      it are aliases of the latest version.
    """

    def __init__(self, config: EnvConfig | None = None, *, scorer: Scorer | None = None, **overrides: Any) -> None:
        self.config = cfg = make_config(config, **overrides)
        self._given_scorer = scorer
        if scorer is None:  # the spaces come from the light task; teacher and data load on the first scoring
            task_config = cfg.task_config()
            light = describe_task(task_config)
            live = (LiveScorer(light, load=task_config, **cfg.scorer_kwargs()) if light is not None
                    else make_live_scorer(cfg, load_task(task_config)))
            scorer = CachedScorer(live, cfg.store, run=cfg.run)
        super().__init__(scorer, **{name: getattr(cfg, name) for name in BEHAVIOUR})

    @staticmethod
    def make_config(**kwargs: Any) -> EnvConfig:
        """The checked config of these arguments (what :func:`ddc_env.registration.env_config` asks for)."""
        return make_config(**kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "scorer": self._given_scorer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], scorer=state["scorer"])
