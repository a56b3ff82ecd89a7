"""The episode logic every DDC env shares (:class:`CompressionEnv`), on a task and a scorer: spaces, masks, the
passes, observations, continuous keep ratios, budget clipping, scoring and reward. The live env
(:class:`ddc_env.env.DDCEnv`) and the benchmark twin (:class:`ddc_env.twins.DDCBenchEnv`) differ only in their
scorer; :class:`~ddc_env.env.DDCEnv`'s docstring is the contract."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .arch import Choice, Decision, NetSpec
from .arch.codec import width_of
from .budget import BudgetClipper, check_budget
from .calibration import calibrated
from .env_config import INVALID_REWARD, REMOVE_BELOW, RENDER_MODES, check_behaviour
from .rewards import RewardFn, make_env_reward
from .scoring import Scorer
from .task import Task
from .walk import F, OBS_DIM, DecisionWalk

__all__ = ["CompressionEnv"]


class CompressionEnv(gym.Env):
    """The episode logic of every DDC env, on ``scorer`` (which holds the task): spaces, masks, passes,
    observations, budget clipping, scoring and reward. See :class:`DDCEnv` for the whole contract; the behaviour
    arguments (``reward``, ``action_mode``, ``stages``, ``masked_action``, ``seed``, ``render_mode``, ``budget``,
    ``remove_below``) are the same for live and twin envs."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(self, scorer: Scorer, *, reward: Any = "calibrated", action_mode: str = "sequential",
                 stages: str = "two_stage", masked_action: str = "nearest", seed: int | None = None,
                 render_mode: str | None = None, budget: Mapping[str, float] | None = None,
                 remove_below: float = REMOVE_BELOW) -> None:
        check_behaviour(action_mode=action_mode, stages=stages, masked_action=masked_action, render_mode=render_mode,
                        seed=seed, budget=budget, remove_below=remove_below)
        self.scorer = scorer
        self.teacher_spec: NetSpec = self.task.teacher_spec
        self.decisions: tuple[Decision, ...] = self.task.decisions
        self.action_choices: tuple[Choice, ...] = self.task.action_choices
        self.reward_fn: RewardFn = make_env_reward(reward, scorer.time_term)
        self._calibrated = False
        self.stages, self.masked_action, self.render_mode = stages, masked_action, render_mode
        self.action_mode, self.remove_below = action_mode, remove_below
        self._seed = seed
        self._episodes = 0  # finished episodes: the clock of a reward's schedule (N2N's budget annealing)
        self._prefetched: dict[str, list[Future]] = {}  # spec hash -> futures of prefetch(), oldest first
        self._walk = DecisionWalk(self.task)
        self._clipper = self._budget_clipper(check_budget(budget))
        n, a = len(self.decisions), len(self.action_choices)
        self._one_shot = action_mode == "one_shot"
        if self._one_shot:
            self.action_space: spaces.Space = spaces.MultiDiscrete([a] * n)
            self.observation_space: spaces.Space = spaces.Box(0.0, 1.0, (n * OBS_DIM,), np.float32)
        else:
            self.action_space = (spaces.Box(0.0, 1.0, (1,), np.float32) if action_mode == "continuous"
                                 else spaces.Discrete(a))
            self.observation_space = spaces.Box(0.0, 1.0, (OBS_DIM,), np.float32)
        self._start()

    @property
    def task(self) -> Task:
        """The task (its scorer's: a live env's task holds its teacher and data once the first student is scored)."""
        return self.scorer.task

    def _budget_clipper(self, budget: tuple[str, float] | None) -> BudgetClipper | None:
        if budget is None:
            return None
        key, ratio = budget
        if key == "latency":
            model = self.scorer.latency_model()
            if model is None:
                raise ValueError("budget={'latency': ...} needs the latency model's time (latency='model'), which "
                                 "this env's scorer does not use")
            return BudgetClipper(self.task, key, ratio, model.predict_ms)
        return BudgetClipper(self.task, key, ratio, lambda spec: getattr(spec, key))

    def meets_budget(self, spec: NetSpec) -> bool:
        """Whether student ``spec`` meets this env's ``budget`` (True without one)."""
        return self._clipper is None or self._clipper.allows(spec)

    def student_spec(self, choices: Mapping[str, Choice]) -> NetSpec:
        """The student spec of ``choices`` (decision name -> "remove" | width | Keep) under the task's channel
        rounding and class subset; choices the teacher does not allow raise ``ActionError``."""
        return self.task.student_spec(choices)

    # -- episode state -----------------------------------------------------------------------------------
    def _start(self) -> None:
        """Begin a new episode: nothing decided, the first step of the first pass."""
        walk = self._walk
        self._actions: list[int | None] = [None] * len(self.decisions)
        self._kept = walk.start_kept
        self._prev = 1.0
        self._done = False
        self._masked = self._clipped = 0
        self._last: dict[str, Any] | None = None
        self._pos = 0
        if self.stages == "joint" or self._one_shot:
            self._pass, self._plan = "joint", list(range(len(self.decisions)))
        elif walk.removal_plan:
            self._pass, self._plan = "removal", walk.removal_plan
        else:
            self._pass, self._plan = "shrink", walk.shrink_candidates

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
            left += len(self._walk.shrink_plan(self._actions))
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
        """Allowed actions of the current step (one-shot: all decisions' masks concatenated; continuous: the
        discrete actions its keep ratio can become)."""
        if self._one_shot:
            return self._walk.masks["joint"].reshape(-1).copy()
        if self._done:  # nothing left to decide: offer only "keep at width 1.0", so a mask is never empty
            mask = np.zeros(len(self.action_choices), dtype=bool)
            mask[self.task.codec.keep_action] = True
            return mask
        return self._walk.masks[self._pass][self._plan[self._pos]].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode; ``info`` holds the layer table (see :class:`DDCEnv`)."""
        if seed is None and self._np_random is None:
            seed = self._seed
        super().reset(seed=seed)
        self._start()
        return self._observation(), {"layer_table": self.layer_table(), "n_decisions": len(self.decisions),
                                     "stages": self.stages}

    def layer_table(self) -> list[dict[str, Any]]:
        """One row per decision, in network order (a new list on every call)."""
        return self._walk.layer_table()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide the current decision (one-shot: all of them); the last step scores the student."""
        self._check_running()
        if self._one_shot:
            actions, masked, clipped, invalid = self._one_shot_actions(action)
            if invalid:
                return self._end_invalid(invalid)
            self._masked, self._clipped, self._actions = masked, clipped, actions
            self._kept -= sum(self._walk.savings[j][a] for j, a in enumerate(self._actions))
            return self._finish({})
        j, a, masked, invalid, info = self._sequential_action(action)
        if invalid:
            return self._end_invalid(invalid)
        self._masked += masked
        self._clipped += info.pop("_clipped")
        self._actions[j] = a
        self._kept -= self._walk.savings[j][a]
        self._prev = self.task.codec.widths[a]
        self._pos += 1
        if self._pos == len(self._plan):
            if self._pass != "removal":
                return self._finish(info)
            self._pass, self._pos = "shrink", 0
            self._plan = self._walk.shrink_plan(self._actions)
            if not self._plan:
                return self._finish(info)
        return self._observation(), 0.0, False, False, info

    def peek_step(self, action: Any) -> tuple[bool, dict[str, Choice] | None]:
        """What :meth:`step` would do with ``action`` now, without doing it: ``(ends, choices)``, whether the step
        ends the episode and, when it ends on a student, that student's choices (what :meth:`prefetch` takes;
        None when the episode goes on or a masked action ends it under ``masked_action="penalty"``). Lets an agent
        play several episodes up to their last step and have their students scored concurrently."""
        self._check_running()
        if self._one_shot:
            actions, _, _, invalid = self._one_shot_actions(action)
            return True, None if invalid else self._choices_of(actions)
        j, a, _, invalid, _ = self._sequential_action(action)
        if invalid:
            return True, None
        if self._pos + 1 < len(self._plan):
            return False, None
        actions = [*self._actions]
        actions[j] = a
        if self._pass == "removal" and self._walk.shrink_plan(actions):
            return False, None
        return True, self._choices_of(actions)

    def _check_running(self) -> None:
        if self._done:
            raise RuntimeError("the episode is over; call reset() before step()")

    def _sequential_action(self, action: Any) -> tuple[int, int, bool, str | None, dict[str, Any]]:
        """The current step's decision index, the action taken (a masked one mapped to the nearest allowed one, a
        keep ratio to its action, either narrowed to the budget), whether it was mapped, the reason when the action
        ends the episode as invalid (penalty mode), and the step's info (``_clipped``: narrowed to the budget)."""
        j = self._plan[self._pos]
        mask = self._walk.masks[self._pass][j]
        if self.action_mode == "continuous":
            ratio = self._check_ratio(action)
            a, masked = self.task.codec.from_ratio(ratio, mask, self.remove_below), False
        else:
            a = self._check_action(action)
            masked = not self._walk.mask_lists[self._pass][j][a]
            if masked and self.masked_action == "penalty":
                return j, a, False, self._masked_reason(j, a), {}
            if masked:
                a = self._walk.nearest[self._pass][j][a]
        clipped = a
        if self._clipper is not None and self._pass != "removal":  # keeping in the removal pass never costs more
            undecided = set(self._plan[self._pos:])
            view = [None if i in undecided else b for i, b in enumerate(self._actions)]
            clipped = self._clipper.clip(view, j, a, mask)
        info: dict[str, Any] = {"_clipped": clipped != a}
        if self.action_mode == "continuous":
            info.update(keep_ratio=ratio, width=self.task.codec.widths[clipped], clipped=clipped != a)
        return j, clipped, masked, None, info

    def _one_shot_actions(self, action: Any) -> tuple[list[int], int, int, str | None]:
        """A one-shot action's per-decision actions (masked ones mapped to the nearest allowed ones, then narrowed to
        the budget in network order), how many were mapped and narrowed, and the reason when the action ends the
        episode as invalid (penalty mode)."""
        n, a_count = len(self.decisions), len(self.action_choices)
        actions = np.asarray(action)
        if actions.shape != (n,) or actions.dtype.kind not in "iu" or actions.min() < 0 or actions.max() >= a_count:
            raise ValueError(f"a one-shot action is an integer array of shape ({n},) with values in "
                             f"[0, {a_count}); got {action!r}")
        joint = self._walk.masks["joint"]
        allowed = joint[np.arange(n), actions]
        if not allowed.all() and self.masked_action == "penalty":
            j = int(np.flatnonzero(~allowed)[0])
            return actions.tolist(), 0, 0, self._masked_reason(j, int(actions[j]))
        chosen: list[int | None] = [self._walk.nearest["joint"][j][a] for j, a in enumerate(actions.tolist())]
        clipped = 0
        if self._clipper is not None:
            for j in range(n):
                asked, chosen[j] = chosen[j], None
                chosen[j] = self._clipper.clip(chosen[:j] + [None] * (n - j), j, asked, joint[j])
                clipped += chosen[j] != asked
        return [int(a) for a in chosen], int((~allowed).sum()), clipped, None

    def _check_action(self, action: Any) -> int:
        """The sequential action as an int; ValueError when it is not an element of the action space."""
        if isinstance(action, (int, np.integer)) or (
                isinstance(action, np.ndarray) and action.shape == () and action.dtype.kind in "iu"):
            a = int(action)
            if 0 <= a < len(self.action_choices):
                return a
        raise ValueError(f"action must be an integer in [0, {len(self.action_choices)}) ({self.task.codec.layout()}); "
                         f"got {action!r}")

    @staticmethod
    def _check_ratio(action: Any) -> float:
        """The continuous action as a float keep ratio; ValueError when it is not an element of ``Box(0, 1, (1,))``."""
        value = np.asarray(action, dtype=float) if not isinstance(action, (str, bytes)) else np.asarray(np.nan)
        if value.size == 1 and np.isfinite(value).all() and 0.0 <= float(value.reshape(-1)[0]) <= 1.0:
            return float(value.reshape(-1)[0])
        raise ValueError(f"a continuous action is a keep ratio in [0, 1] (Box(0, 1, (1,))); got {action!r}")

    def _masked_reason(self, j: int, a: int) -> str:
        allowed = [self.task.codec.label(i) for i in np.flatnonzero(self._walk.masks[self._pass][j])]
        return (f"action {a} ({self.task.codec.label(a)}) is not allowed for decision {self.decisions[j].name!r} "
                f"in the {self._pass} pass; allowed: {allowed}")

    def _observation(self) -> np.ndarray:
        if self._one_shot:
            return self._walk.flat_obs.copy()
        obs = self._walk.rows[self._pass][self._plan[self._pos]].copy()
        obs[F["params_kept"]] = min(max(self._kept, 0.0), 1.0)
        obs[F["prev_width"]] = self._prev
        return obs

    def _terminal_observation(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        if not self._one_shot:
            obs[F["params_kept"]] = min(max(self._kept, 0.0), 1.0)
            obs[F["prev_width"]] = self._prev
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

    def _finish(self, step_info: Mapping[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score and reward the student of the choices made (a prefetched one: its record)."""
        choices = self.choices()
        spec = self.task.student_spec(choices)
        waiting = self._prefetched.get(spec.hash(), [])
        future = waiting.pop(0) if waiting else self.scorer.submit(spec)
        if not waiting:
            self._prefetched.pop(spec.hash(), None)
        record = copy.deepcopy(future.result())
        return self._end({**record, **step_info}, self._reward(record), choices)

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
        if self._clipper is not None:
            info["clipped_actions"] = self._clipped
        self._done, self._last = True, info
        self._episodes += 1
        return self._terminal_observation(), reward, True, False, copy.deepcopy(info)

    # -- rendering, closing --------------------------------------------------------------------------------
    def render(self) -> str | None:
        """In "ansi" mode: a text table of decisions, teacher channels and choices, then the student's metrics."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' to the env")
            return None
        current = self.current_decision
        lines = [f"{'decision':<16}{'channels':>9}  choice"]
        for d, a in zip(self.decisions, self._actions):
            choice = "-" if a is None else self.task.codec.label(a)
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

    def close(self) -> None:
        """Release the scorer's connections and workers (a live scorer reopens its store on the next use)."""
        self.scorer.close()
