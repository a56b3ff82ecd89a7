"""Stable-baselines3 agents on DDC envs: PPO, A2C, DQN, (from sb3-contrib) MaskablePPO and RecurrentPPO, and AMC's
continuous-control agents DDPG, TD3 and SAC (``action_mode="continuous"``).

Sized for expensive steps: every episode ends in a student evaluation (seconds to minutes), so SB3's
defaults (PPO's ``n_steps=2048``) would spend ~100 evaluations on one update. :data:`HYPERPARAMS` holds
defaults sized in *episodes* instead: an update costs a handful of evaluations. ``None`` entries are derived
from the env's (longest) episode length by :func:`resolve_hyperparams`.

:func:`run` trains until the log (e.g. :class:`ddc_env.lab.runs.SearchLog`) holds ``episodes`` finished episodes
(counted, not guessed from timesteps: two-stage episodes vary in length), reports every finished episode to it,
forwards SB3's own scalars (``train/loss``, ``rollout/...``) to the log's ``agent/*`` scalars so one TensorBoard
folder holds everything against episodes, checkpoints after every update and resumes.

AMC's agents (He et al. 2018) act on ``action_mode="continuous"`` (a keep ratio per step) with AMC's settings where
they fit: undiscounted returns (gamma 1.0: the only reward is the terminal one), soft target updates (tau 0.01), a
replay buffer of a few thousand transitions (5,000: every transition of a 200-evaluation search on either twin), a
warm-up of uniform random keep ratios for the first ``warmup_episodes`` (``learning_starts`` = that many longest
episodes, so at least that many episodes), then one update round per finished episode with as many gradient steps
as the episode had steps (AMC updates once per transition), minibatches of 64. Their actor and critic are 64-64
MLPs like the other agents' here, not AMC's 300-300: the observation has 17 features, the action one, and a search
sees a few thousand transitions, which 300-300 networks (~95k weights each) would only overfit. SB3 gives actor
and critic one learning rate: 1e-3 (AMC: critic 1e-3, actor 1e-4). DDPG and TD3 explore as AMC does
(:mod:`ddc_env.agents.amc_exploration`): a normal around the actor's keep ratio truncated to [0, 1], sigma 0.5 (in
keep-ratio units) decayed by 0.95 per episode after the warm-up; SAC explores by its own entropy bonus. The tuned
settings of the twins are in ``configs/bench/<twin>/{ddpg,td3,sac}.yaml``.

Example::

    log = SearchLog("runs/ppo", total_episodes=200)          # ddc_env.lab.runs.SearchLog
    run(lambda: gym.make("DDC-LeNet5-MNIST", fidelity="zero", store="runs/r.sqlite"), episodes=200, log=log,
        algo="maskable_ppo", checkpoint=Path("runs/ppo/model.zip"), learning_rate=1e-3)
"""
from __future__ import annotations

import functools
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from ddc_env.paths import atomic_writer
from ddc_env.validate import (check_bool, check_choice, check_device, check_int, check_mapping, check_names,
                              check_number)

from .amc_exploration import AMCDDPG, AMCTD3, TruncatedNormalNoise
from .common import EpisodeLog

ALGOS = ("ppo", "a2c", "dqn", "maskable_ppo", "recurrent_ppo", "ddpg", "td3", "sac")
_CONTRIB = {"maskable_ppo": ("MaskablePPO", "MlpPolicy"), "recurrent_ppo": ("RecurrentPPO", "MlpLstmPolicy")}
_POLICY_KWARGS = MappingProxyType({"net_arch": [64, 64]})
# PPO-family defaults: an update every 4 episodes (n_steps = episode length x 4 / n_envs), minibatches of a
# quarter of the rollout, 8 epochs over it; undiscounted returns (the only reward is the terminal one).
_PPO = {"episodes_per_update": 4, "n_steps": None, "batch_size": None, "n_epochs": 8, "learning_rate": 1e-3,
        "gamma": 1.0, "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
        "max_grad_norm": 0.5, "target_kl": None, "policy_kwargs": _POLICY_KWARGS, "device": "cpu", "verbose": 0}
_AMC = {"learning_rate": 1e-3, "buffer_size": 5_000, "warmup_episodes": 10, "batch_size": 64, "tau": 0.01,
        "gamma": 1.0, "train_freq": (1, "episode"), "gradient_steps": -1, "policy_kwargs": _POLICY_KWARGS,
        "device": "cpu", "verbose": 0}
_AMC_NOISE = {"noise_sigma": 0.5, "noise_decay": 0.95}  # TruncatedNormalNoise's, in keep-ratio units
HYPERPARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "ppo": MappingProxyType(_PPO),
    "maskable_ppo": MappingProxyType(_PPO),
    "recurrent_ppo": MappingProxyType({**_PPO, "policy_kwargs": MappingProxyType(
        {"net_arch": [64], "lstm_hidden_size": 64})}),
    # A2C: one update per episode and env (n_steps = episode length)
    "a2c": MappingProxyType({"episodes_per_update": 1, "n_steps": None, "learning_rate": 7e-4, "gamma": 1.0,
                             "gae_lambda": 1.0, "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 0.5,
                             "normalize_advantage": False, "policy_kwargs": _POLICY_KWARGS, "device": "cpu",
                             "verbose": 0}),
    # DQN: train after every episode (8 gradient steps), start after 4 episodes (learning_starts None = 4 x
    # episode length), a small buffer, the target net updated every 10 episodes (None = 10 x episode length);
    # exploration_fraction is a fraction of the episode budget counted in longest episodes.
    "dqn": MappingProxyType({"learning_rate": 1e-3, "buffer_size": 10_000, "learning_starts": None,
                             "batch_size": 32, "tau": 1.0, "gamma": 1.0, "train_freq": (1, "episode"),
                             "gradient_steps": 8, "target_update_interval": None, "exploration_fraction": 0.3,
                             "exploration_initial_eps": 1.0, "exploration_final_eps": 0.05,
                             "max_grad_norm": 10.0, "policy_kwargs": _POLICY_KWARGS, "device": "cpu",
                             "verbose": 0}),
    # AMC's agents (see the module docstring): warm-up episodes of uniform random keep ratios, then one update
    # round per episode with as many gradient steps as it had steps (-1)
    "ddpg": MappingProxyType({**_AMC, **_AMC_NOISE}),
    "td3": MappingProxyType({**_AMC, **_AMC_NOISE, "policy_delay": 2, "target_policy_noise": 0.2,
                             "target_noise_clip": 0.5}),
    "sac": MappingProxyType({**_AMC, "ent_coef": "auto"}),
})


def _positive_or_schedule(value: Any, name: str) -> None:
    """A number > 0, or SB3's schedule (a callable of the remaining progress)."""
    if not callable(value):
        check_number(value, name, minimum=0.0, exclusive_minimum=True)


def _train_freq(value: Any, name: str) -> None:
    """A positive integer (steps), or ``[n, "step" | "episode"]``."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[1] in ("step", "episode"):
        value = value[0]
    elif isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a positive integer or [n, 'step' | 'episode'], got {value!r}")
    check_int(value, name, minimum=1)


def _fraction(value: Any, name: str) -> None:
    """A number in [0, 1]."""
    check_number(value, name, minimum=0.0, maximum=1.0)


def _entropy_coef(value: Any, name: str) -> None:
    """SAC's: a number > 0, "auto" (learned, starting at 1) or "auto_<number > 0>" (learned, starting there)."""
    if value == "auto":
        return
    start = value[len("auto_"):] if isinstance(value, str) and value.startswith("auto_") else value
    try:
        check_number(float(start) if start is not value else start, name, minimum=0.0, exclusive_minimum=True)
    except ValueError:
        raise ValueError(f"{name} must be a number > 0, 'auto' or 'auto_<initial value > 0>', got {value!r}") from None


# what each hyperparameter of HYPERPARAMS allows: check(value, name) raises a ValueError naming a bad value
_CHECKS: Mapping[str, Callable[[Any, str], Any]] = MappingProxyType({
    "episodes_per_update": functools.partial(check_int, minimum=1),
    "n_steps": functools.partial(check_int, minimum=1, optional=True),
    "batch_size": functools.partial(check_int, minimum=2, optional=True),  # PPO asserts > 1; off-policy: below
    "n_epochs": functools.partial(check_int, minimum=1),
    "learning_rate": _positive_or_schedule,
    "clip_range": _positive_or_schedule,
    "gamma": _fraction, "gae_lambda": _fraction, "tau": _fraction, "exploration_fraction": _fraction,
    "exploration_initial_eps": _fraction, "exploration_final_eps": _fraction,
    "ent_coef": functools.partial(check_number, minimum=0.0),
    "vf_coef": functools.partial(check_number, minimum=0.0),
    "max_grad_norm": functools.partial(check_number, minimum=0.0, exclusive_minimum=True),
    "target_kl": functools.partial(check_number, minimum=0.0, exclusive_minimum=True, optional=True),
    "normalize_advantage": check_bool,
    "policy_kwargs": check_mapping,
    "device": check_device,
    "verbose": functools.partial(check_int, minimum=0, maximum=2),
    "buffer_size": functools.partial(check_int, minimum=1),
    "learning_starts": functools.partial(check_int, minimum=0, optional=True),
    "train_freq": _train_freq,
    "gradient_steps": functools.partial(check_int, minimum=-1),  # -1: as many as the env steps since the last
    "target_update_interval": functools.partial(check_int, minimum=1, optional=True),
    "warmup_episodes": functools.partial(check_int, minimum=0),
    "noise_sigma": functools.partial(check_number, minimum=0.0),  # 0: no exploration noise
    "noise_decay": functools.partial(check_number, minimum=0.0, maximum=1.0, exclusive_minimum=True),
    "policy_delay": functools.partial(check_int, minimum=1),
    "target_policy_noise": functools.partial(check_number, minimum=0.0),
    "target_noise_clip": functools.partial(check_number, minimum=0.0),
})
# the off-policy algorithms sample minibatches from a replay buffer: one transition is a minibatch; SAC's ent_coef
_OFF_POLICY_CHECKS = {"batch_size": functools.partial(check_int, minimum=1)}
_ALGO_CHECKS: Mapping[str, Mapping[str, Callable[[Any, str], Any]]] = MappingProxyType({
    "dqn": _OFF_POLICY_CHECKS, "ddpg": _OFF_POLICY_CHECKS, "td3": _OFF_POLICY_CHECKS,
    "sac": {**_OFF_POLICY_CHECKS, "ent_coef": _entropy_coef}})


def check_hyperparams(algo: str, overrides: Mapping[str, Any]) -> None:
    """Check ``overrides`` of :data:`HYPERPARAMS[algo]` without building anything: unknown names, and every value
    of the wrong type or out of range, raise a one-line ValueError naming it."""
    check_names(overrides, sorted(HYPERPARAMS[check_choice(algo, "algo", ALGOS)]), f"{algo} hyperparameter(s)")
    checks = {**_CHECKS, **_ALGO_CHECKS.get(algo, {})}
    for name, value in overrides.items():
        checks[name](value, name)


# keys the vector env / Monitor add to a terminal info: not part of the evaluation record
_VEC_INFO_KEYS = ("terminal_observation", "episode", "TimeLimit.truncated")


def resolve_hyperparams(algo: str, overrides: Mapping[str, Any], episode_length: int, n_envs: int, *,
                        seed: int = 0) -> dict[str, Any]:
    """The SB3 constructor kwargs of ``algo``: :data:`HYPERPARAMS` with ``overrides`` (ValueError for a name
    not in it) and its ``None`` entries derived from ``episode_length`` (the longest episode) and ``n_envs``;
    ``warmup_episodes`` becomes ``learning_starts``, ``noise_sigma`` and ``noise_decay`` a
    :class:`TruncatedNormalNoise` drawing with ``seed`` (none when sigma is 0)."""
    check_hyperparams(algo, overrides)
    params = {k: _plain(v) for k, v in {**HYPERPARAMS[algo], **overrides}.items()}
    if "episodes_per_update" in params:
        per_update = params.pop("episodes_per_update")
        if params["n_steps"] is None:
            params["n_steps"] = max(1, math.ceil(episode_length * per_update / n_envs))
    if "batch_size" in params and params["batch_size"] is None:
        params["batch_size"] = max(2, params["n_steps"] * n_envs // 4)
    if isinstance(params.get("train_freq"), list):  # YAML's form of SB3's (n, unit) tuple
        params["train_freq"] = tuple(params["train_freq"])
    if "warmup_episodes" in params:
        params["learning_starts"] = params.pop("warmup_episodes") * episode_length
    if "noise_sigma" in params:
        sigma, decay = params.pop("noise_sigma"), params.pop("noise_decay")
        params["action_noise"] = TruncatedNormalNoise(sigma, decay, seed=seed) if sigma > 0 else None
    if algo == "dqn":
        if params["learning_starts"] is None:
            params["learning_starts"] = 4 * episode_length
        if params["target_update_interval"] is None:
            params["target_update_interval"] = 10 * episode_length
    return params


# the action spaces an algorithm takes (others: any); a mismatch names the action_mode to make the env with
_SPACES: Mapping[str, tuple[type[spaces.Space], ...]] = MappingProxyType({
    "dqn": (spaces.Discrete,), "maskable_ppo": (spaces.Discrete, spaces.MultiDiscrete),
    "ddpg": (spaces.Box,), "td3": (spaces.Box,), "sac": (spaces.Box,)})
_MODES = {spaces.Discrete: "sequential", spaces.MultiDiscrete: "one_shot", spaces.Box: "continuous"}


def check_action_space(algo: str, space: spaces.Space) -> None:
    """A one-line ValueError when ``algo`` cannot act in ``space``, naming the action_mode it needs and the
    algorithms that act in this one."""
    allowed = _SPACES.get(algo, (spaces.Space,))
    if isinstance(space, allowed):
        return
    needed = " or ".join(repr(_MODES[kind]) for kind in allowed)
    mode = next((m for kind, m in _MODES.items() if isinstance(space, kind)), None)
    others = [a for a in ALGOS if isinstance(space, _SPACES.get(a, (spaces.Space,)))]
    raise ValueError(f"{algo} needs action_mode={needed}; this env's action space is {space} (action_mode={mode!r}): "
                     f"make the env with action_mode={_MODES[allowed[0]]!r}, or use {', '.join(others)}")


class LogWriter(KVWriter):
    """An SB3 logger output that forwards every numeric value SB3 logs to ``log.scalar`` (``agent/<key>``)."""

    def __init__(self, log: EpisodeLog) -> None:
        self.log = log

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        for key, value in key_values.items():
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value):
                self.log.scalar(key, float(value))

    def close(self) -> None:
        pass


class MetricsCallback(BaseCallback):
    """Reports every finished episode to ``log`` (its terminal reward and info); stops training once
    ``log.episodes >= episodes`` (off-policy algorithms one step later, logging nothing more)."""

    def __init__(self, log: EpisodeLog, episodes: int) -> None:
        super().__init__()
        self.log = log
        self.episodes = episodes

    def _on_step(self) -> bool:
        if self.log.episodes >= self.episodes:  # off-policy: the step after the budget was reached
            return False
        infos, rewards = self.locals["infos"], self.locals["rewards"]
        for i in np.flatnonzero(self.locals["dones"]):
            info = {k: v for k, v in infos[i].items() if k not in _VEC_INFO_KEYS}
            reward = float(info.get("reward", rewards[i]))  # the env's float64 reward; the vec env's is float32
            self.log.record(reward, info)
        # an off-policy algorithm stores the transition after this callback: stop one step later, so the last
        # episode's terminal transition (its reward) reaches the replay buffer and the checkpoint
        return self.log.episodes < self.episodes or isinstance(self.model, OffPolicyAlgorithm)

    def _on_training_end(self) -> None:
        self.logger.dump(self.num_timesteps)  # the episodes since the last update's dump


class _CheckpointCallback(BaseCallback):
    """Saves the model (and a replay buffer) at the start of every rollout, i.e. after every update, when
    anything happened since the last save."""

    def __init__(self, path: Path, log: EpisodeLog) -> None:
        super().__init__()
        self.path, self.log = path, log
        self._saved_at = -1

    def _on_training_start(self) -> None:
        self._saved_at = self.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.num_timesteps > self._saved_at:
            save_checkpoint(self.model, self.path, self.log.episodes)
            self._saved_at = self.num_timesteps

    def _on_step(self) -> bool:
        return True


def run(env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int = 0,
        checkpoint: Path | None = None, resume: bool = False, init_from: Path | None = None,
        algo: str = "ppo", n_envs: int = 1, **hyperparams: Any) -> None:
    """Train an SB3 ``algo`` on ``n_envs`` copies of ``env_fn()`` until ``log`` holds ``episodes`` episodes.

    - ``n_envs > 1``: a ``SubprocVecEnv`` (give the envs one ``store=`` so they share evaluations) whose
      workers use ``cpu_count // n_envs`` torch threads each (at least 1), else a ``DummyVecEnv``. When
      several envs finish on the same step the log may end up to ``n_envs - 1`` episodes past ``episodes``:
      every student evaluated up to then is logged.
    - ``hyperparams``: overrides of :data:`HYPERPARAMS[algo]` (ValueError for unknown names).
    - The env's action space must suit ``algo`` (ddpg, td3, sac: ``action_mode="continuous"``; dqn:
      "sequential"; maskable_ppo: "sequential" or "one_shot"): else a ValueError before any step.
    - ``checkpoint``: the model is saved there (".zip" appended if missing, written atomically) after every
      update and at the end, with the episode count (:func:`saved_episodes`); an off-policy algorithm's (dqn,
      ddpg, td3, sac) replay buffer goes beside it (``<checkpoint>.replay.pkl``). With ``resume=True`` and an
      existing checkpoint, training continues from it (timesteps, optimiser, replay buffer, exploration noise);
      create ``log`` with ``start_episode=saved_episodes(checkpoint)`` so the episode count continues too.
    - ``init_from``: a checkpoint of another run (same algo and policy, possibly another env id: the spaces do
      not depend on the teacher's depth) whose weights start the policy; ignored when resuming.
    - TensorBoard: SB3's scalars go to ``log.scalar`` (the log's ``agent/*``), episodes to ``log.record``.
    """
    cls, policy = _algorithm(algo)
    check_int(episodes, "episodes", minimum=1)
    check_int(n_envs, "n_envs", minimum=1)
    check_hyperparams(algo, hyperparams)  # before any env is built
    ckpt = _zip_path(checkpoint) if checkpoint is not None else None
    init = _zip_path(init_from) if init_from is not None else None
    if init is not None and not init.exists():
        raise FileNotFoundError(f"init_from {init_from} is no stable-baselines3 checkpoint ({init} does not exist): "
                                f"give the agent.ckpt of another {algo} run")
    if n_envs > 1:  # workers share the cores instead of each taking them all
        threads = max(1, (os.cpu_count() or 1) // n_envs)
        vec_env: VecEnv = SubprocVecEnv([functools.partial(_monitored, env_fn, threads)] * n_envs)
    else:
        vec_env = DummyVecEnv([functools.partial(_monitored, env_fn)])
    try:
        check_action_space(algo, vec_env.action_space)
        episode_length = max(vec_env.get_attr("steps_left"))  # the longest episode, at the start of one
        params = resolve_hyperparams(algo, hyperparams, episode_length, n_envs, seed=seed)
        resuming = resume and ckpt is not None and ckpt.exists()
        if resuming:
            model = _load(cls, ckpt, vec_env, params, log)
            model.set_random_seed(seed)
        else:
            model = cls(policy, vec_env, seed=seed, **params)
            if init is not None:
                _init_weights(model, init, algo)
        model.set_logger(Logger(folder=None, output_formats=[LogWriter(log)]))
        callbacks: list[BaseCallback] = [MetricsCallback(log, episodes)]
        if ckpt is not None:
            callbacks.append(_CheckpointCallback(ckpt, log))
        remaining = episodes - log.episodes
        if remaining > 0:
            # an upper bound: n_envs episodes in flight, each at most episode_length steps; the callback stops
            model.learn(total_timesteps=(remaining + n_envs) * episode_length, callback=callbacks,
                        log_interval=1, reset_num_timesteps=not resuming)
        if ckpt is not None:
            save_checkpoint(model, ckpt, log.episodes)
    finally:
        vec_env.close()


def save_checkpoint(model: BaseAlgorithm, path: Path, episodes: int) -> None:
    """Save ``model`` (with the search's episode count) to ``path`` atomically, and an off-policy model's
    replay buffer to ``<path>.replay.pkl``."""
    model.ddc_episodes = episodes  # saved with the model's data (see saved_episodes)
    with atomic_writer(path, "wb") as f:
        model.save(f)
    if isinstance(model, OffPolicyAlgorithm):
        with atomic_writer(_replay_path(path), "wb") as f:
            model.save_replay_buffer(f)


def saved_episodes(checkpoint: Path) -> int:
    """The episodes the search had logged when ``checkpoint`` was saved; 0 when there is no checkpoint."""
    path = _zip_path(checkpoint)
    if not path.exists():
        return 0
    with zipfile.ZipFile(path) as archive:
        return int(json.loads(archive.read("data")).get("ddc_episodes", 0))


def _algorithm(algo: str) -> tuple[type[BaseAlgorithm], str]:
    """The SB3 class and policy name of ``algo``; a clear ImportError when sb3-contrib is missing."""
    check_choice(algo, "algo", ALGOS)
    if algo in _CONTRIB:
        name, policy = _CONTRIB[algo]
        try:
            import sb3_contrib
        except ImportError as e:
            raise ImportError(f"algo {algo!r} ({name}) needs sb3-contrib, part of ddc-env's default install: pip "
                              f"install sb3-contrib") from e
        return getattr(sb3_contrib, name), policy
    classes = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "ddpg": AMCDDPG, "td3": AMCTD3, "sac": SAC}
    return classes[algo], "MlpPolicy"


def _plain(value: Any) -> Any:
    """A fresh, mutable copy of a default (SB3 may modify policy_kwargs)."""
    return {k: _plain(v) for k, v in value.items()} if isinstance(value, Mapping) else (
        list(value) if isinstance(value, list) else value)


def _monitored(env_fn: Callable[[], gym.Env], threads: int | None = None) -> gym.Env:
    """``env_fn()`` in SB3's Monitor; ``threads``: this (worker) process's torch threads."""
    if threads is not None:
        torch.set_num_threads(threads)
    return Monitor(env_fn())


def _load(cls: type[BaseAlgorithm], path: Path, vec_env: VecEnv, params: dict[str, Any],
          log: EpisodeLog) -> BaseAlgorithm:
    """Resume from ``path``: its weights, optimiser, counters and exploration noise (sigma, generator), with the other
    ``params`` applied (the architecture stays the checkpoint's)."""
    saved = saved_episodes(path)
    if log.episodes != saved:
        warnings.warn(f"resuming from {path}, saved after {saved} episodes, with a log at {log.episodes}; create "
                      f"the log with start_episode=saved_episodes(checkpoint) to continue the count",
                      stacklevel=3)
    kwargs = {k: v for k, v in params.items() if k not in ("policy_kwargs", "device", "action_noise")}
    model = cls.load(path, env=vec_env, device=params["device"], **kwargs)
    replay = _replay_path(path)
    if isinstance(model, OffPolicyAlgorithm) and replay.exists():
        empty = model.replay_buffer
        model.load_replay_buffer(replay)
        if model.replay_buffer.n_envs != vec_env.num_envs:
            warnings.warn(f"the replay buffer in {replay} was filled by {model.replay_buffer.n_envs} envs, not "
                          f"{vec_env.num_envs}; starting with an empty one", stacklevel=3)
            model.replay_buffer = empty
    return model


def _init_weights(model: BaseAlgorithm, path: Path, algo: str) -> None:
    """Load the policy (and optimiser) weights of another run's checkpoint into ``model``."""
    try:
        model.set_parameters(str(path), exact_match=True, device=model.device)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"cannot start the {algo} policy from {path}: it needs a checkpoint of the same algo, "
                         f"policy architecture and observation/action spaces ({e})") from e


def _zip_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with the ".zip" SB3 appends to a name without it."""
    path = Path(path)
    return path if path.suffix == ".zip" else path.with_name(path.name + ".zip")


def _replay_path(path: Path) -> Path:
    return path.with_name(path.name + ".replay.pkl")


__all__ = ["ALGOS", "HYPERPARAMS", "LogWriter", "MetricsCallback", "check_action_space", "check_hyperparams",
           "resolve_hyperparams", "run", "save_checkpoint", "saved_episodes"]
