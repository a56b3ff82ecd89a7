"""Machinery every agent shares: the log protocol agents report episodes to, concurrent play of a batch of
independent episodes, the layer-table features controllers read, hyperparameter parsing, atomic agent checkpoints,
and the loop of the black-box optimizers (a configuration of every decision, played as an episode).
Agents act through the Gymnasium API only."""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import numpy as np
import torch

from ddc_env.arch import REMOVE, Choice, Keep
from ddc_env.paths import atomic_write_text, atomic_writer
from ddc_env.validate import check_int, check_names, check_number


class EpisodeLog(Protocol):
    """What an agent reports to (e.g. :class:`ddc_env.lab.runs.SearchLog`): every finished episode, its own
    scalars, and the episode count it stops at."""

    episodes: int
    best_reward: float

    def record(self, reward: float, info: Mapping[str, Any]) -> None: ...

    def scalar(self, name: str, value: float, step: int | None = None) -> None: ...


E = TypeVar("E")


def play_episodes(env: gym.Env, n: int, play: Callable[[gym.Env], E], *, concurrent: bool | None = None
                  ) -> list[E]:
    """``n`` episodes of ``play(env)`` (one whole episode per call, returning a dataclass with ``reward`` and
    ``info`` fields), in order, with the students of all ``n`` scored concurrently when the env's scorer is a
    parallel backend (``concurrent=None``: ask ``env.unwrapped.scorer``).

    Concurrent play: each episode is played up to its last step, whose student is handed to the scorer at once
    (``env.unwrapped.prefetch``) instead of being waited for; then the episodes are replayed in order, each
    terminal step taking its prefetched record. Students, actions, rewards and infos are exactly those of playing
    the episodes one after another, so ``play`` must not act on the terminal reward or info (they are filled in
    afterwards) and must draw its randomness from its own generator, not from the env."""
    concurrent = getattr(getattr(env.unwrapped, "scorer", None), "concurrent", False) if concurrent is None else (
        concurrent)
    if not concurrent or n < 2:
        return [play(env) for _ in range(n)]
    planner = _Planner(env)
    planned = [play(planner) for _ in range(n)]
    played = []
    for episode, actions in zip(planned, planner.actions):
        env.reset()
        for action in actions:
            _, reward, terminated, truncated, info = env.step(action)
        if not (terminated or truncated):
            raise RuntimeError("a replayed episode did not end on its last action: the env is not deterministic "
                               "given the actions")
        played.append(dataclasses.replace(episode, reward=float(reward), info=info))
    return played


class _Planner(gym.Wrapper):
    """The env as :func:`play_episodes` plays it first: a step that would end the episode is not taken; its student
    is prefetched and the episode ends with a placeholder reward of 0. Every episode's actions are kept."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[list[Any]] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.actions.append([])
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.actions[-1].append(action)
        ends, choices = self.env.unwrapped.peek_step(action)
        if not ends:
            return self.env.step(action)
        if choices is not None:
            self.env.unwrapped.prefetch(choices)
        space = self.observation_space
        return np.zeros(space.shape, space.dtype), 0.0, True, False, {}


def layer_features(layer_table: list[dict[str, Any]]) -> torch.Tensor:
    """(n_decisions, features) float tensor of the normalised per-decision features from ``reset()``'s info."""
    return torch.tensor(np.array([row["features"] for row in layer_table], dtype=np.float32))


H = TypeVar("H")


def make_hyperparams(cls: type[H], overrides: Mapping[str, Any]) -> H:
    """The dataclass ``cls`` (an agent's ``Hyperparams``) with ``overrides``; an unknown name raises a
    ValueError listing the allowed ones."""
    check_names(overrides, [f.name for f in dataclasses.fields(cls)], "hyperparameter(s)")
    return cls(**overrides)


# the hyperparameter names the controllers share, by what they allow
_POSITIVE_INTS = ("rollouts", "hidden")
_POSITIVE = ("lr", "removal_lr", "shrink_lr", "max_grad_norm")
_NON_NEGATIVE = ("entropy_coef", "value_coef")


def check_shared_hyperparams(hp: Any) -> None:
    """Check the fields of an agent's ``Hyperparams`` that every controller names alike: ``rollouts`` and ``hidden``
    positive integers, learning rates and ``max_grad_norm`` finite and > 0, ``entropy_coef`` and ``value_coef``
    finite and >= 0, ``baseline_decay`` in [0, 1)."""
    for f in dataclasses.fields(hp):
        value = getattr(hp, f.name)
        if f.name in _POSITIVE_INTS:
            check_int(value, f.name, minimum=1)
        elif f.name in _POSITIVE:
            check_number(value, f.name, minimum=0.0, exclusive_minimum=True)
        elif f.name in _NON_NEGATIVE:
            check_number(value, f.name, minimum=0.0)
        elif f.name == "baseline_decay":
            check_number(value, f.name, minimum=0.0, maximum=1.0, exclusive_maximum=True)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write an agent's state (tensors, state dicts, plain Python values) atomically with ``torch.save``."""
    with atomic_writer(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An agent state written by :func:`save_checkpoint` (loaded on the CPU, tensors and plain values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


# -- black-box optimizers ----------------------------------------------------------------------------------
Configuration = tuple[int, ...]  # one action index per decision, in network order
Genome = tuple[int, ...]  # one value per gene of a DecisionSpace


@dataclass(frozen=True)
class Gene:
    """One variable of a configuration: whether decision number ``decision`` removes its unit (``removal``; values 0
    keep, 1 remove), or which of the actions keeping it it takes (values: their positions, narrowest first)."""

    decision: int
    removal: bool
    size: int


@dataclass(frozen=True)
class DecisionSpace:
    """What a black-box optimizer chooses, as the two passes of a two-stage episode: for every decision (network
    order) whether it removes its unit (removable ones only) and which of its actions keeping the unit it takes
    (``kept``: narrowest to widest, a 1x1-kernel variant right after its width). A genome has a gene for every choice
    there is; drawn uniformly, it gives the students of masked random episodes with the same probabilities."""

    names: tuple[str, ...]
    removable: tuple[bool, ...]
    kept: tuple[tuple[int, ...], ...]
    remove: int  # the action "remove"

    @functools.cached_property
    def genes(self) -> tuple[Gene, ...]:
        genes = []
        for j, kept in enumerate(self.kept):
            if self.removable[j]:
                genes.append(Gene(j, True, 2))
            if len(kept) > 1:
                genes.append(Gene(j, False, len(kept)))
        return tuple(genes)

    def removed(self, genome: Genome) -> set[int]:
        """The decisions whose unit ``genome`` removes."""
        return {gene.decision for gene, value in zip(self.genes, genome) if gene.removal and value}

    def actions(self, genome: Genome) -> Configuration:
        """The action of every decision under ``genome`` (a decision without a gene keeps its one action)."""
        actions = [kept[0] for kept in self.kept]
        for gene, value in zip(self.genes, genome):
            if not gene.removal:
                actions[gene.decision] = self.kept[gene.decision][value]
        removed = self.removed(genome)
        return tuple(self.remove if j in removed else action for j, action in enumerate(actions))

    def active(self, genome: Genome) -> list[int]:
        """The genes whose value changes the configuration: all but the width genes of removed units."""
        removed = self.removed(genome)
        return [k for k, gene in enumerate(self.genes) if gene.removal or gene.decision not in removed]

    def sample(self, rng: np.random.Generator) -> Genome:
        """A genome drawn uniformly, gene by gene."""
        return tuple(int(rng.integers(gene.size)) for gene in self.genes)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "removable": list(self.removable),
                "kept": [list(kept) for kept in self.kept], "remove": self.remove}


def _width(choice: Choice) -> float:
    return choice.width if isinstance(choice, Keep) else float(choice)


def _keeps(row: Mapping[str, Any], choice: Choice) -> bool:
    """Whether ``choice`` is an action keeping the unit that the decision of a layer-table row allows (DDCEnv
    docstring, Action Space: widths below 1.0 only if it is shrinkable, 1x1 kernels only if kernel-shrinkable)."""
    if choice == REMOVE:
        return False
    kernel_ok = not isinstance(choice, Keep) or bool(row["kernel_shrinkable"])
    return (_width(choice) == 1.0 or bool(row["shrinkable"])) and kernel_ok


def decision_space(env: gym.Env, layer_table: list[dict[str, Any]]) -> DecisionSpace:
    """The decision space of ``env`` from ``reset()``'s layer table (what the one-shot masks allow, in any action
    mode)."""
    choices = env.unwrapped.action_choices
    order = sorted((a for a, c in enumerate(choices) if c != REMOVE),
                   key=lambda a: (_width(choices[a]), isinstance(choices[a], Keep)))
    return DecisionSpace(tuple(row["name"] for row in layer_table),
                         tuple(bool(row["removable"]) for row in layer_table),
                         tuple(tuple(a for a in order if _keeps(row, choices[a])) for row in layer_table),
                         choices.index(REMOVE))


def play_configuration(env: gym.Env, space: DecisionSpace, actions: Configuration) -> tuple[float, dict[str, Any]]:
    """Play ``actions`` (one per decision of ``space``) as one episode and return its terminal reward and info.

    One-shot mode: one step. Sequential mode: each step takes the action of ``current_decision``; in the two-stage
    removal pass a decision whose action is not "remove" is kept at width 1.0, its action is taken in the shrink
    pass. An action the env's mask forbids raises a RuntimeError (``space`` is not this env's)."""
    env.reset()
    unwrapped = env.unwrapped
    if isinstance(env.action_space, gym.spaces.MultiDiscrete):
        step: Any = np.array(actions, dtype=np.int64)
        if not unwrapped.action_masks().reshape(len(actions), -1)[np.arange(len(actions)), step].all():
            raise RuntimeError(f"the env's one-shot mask forbids configuration {list(actions)}")
        _, reward, _, _, info = env.step(step)
        return float(reward), info
    index = {name: j for j, name in enumerate(space.names)}
    keep = unwrapped.action_of(1.0)
    while True:
        decision = unwrapped.current_decision
        step = actions[index[decision.name]]
        if not unwrapped.action_masks()[step]:
            if unwrapped.current_pass != "removal":
                raise RuntimeError(f"the env forbids action {step} for decision {decision.name!r} in the "
                                   f"{unwrapped.current_pass} pass")
            step = keep  # the width is decided in the shrink pass
        _, reward, terminated, truncated, info = env.step(step)
        if terminated or truncated:
            return float(reward), info


class BlackBox(Protocol):
    """A black-box optimizer over the genomes of a :class:`DecisionSpace`: it proposes one, is told its reward, and
    its whole state is JSON data."""

    def propose(self) -> Genome: ...

    def observe(self, genome: Genome, reward: float) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


def saved_blackbox_episodes(path: str | os.PathLike[str]) -> int:
    """The episode count of a black-box agent's JSON checkpoint (``ddc search --resume`` starts its log from it)."""
    return int(json.loads(Path(path).read_text())["episodes"])


def run_blackbox(agent: str, hp: Any, make_optimizer: Callable[[DecisionSpace, Any, int], BlackBox],
                 env_fn: Callable[[], gym.Env], *, episodes: int, log: EpisodeLog, seed: int,
                 checkpoint: Path | None, resume: bool, init_from: Path | None) -> None:
    """The agent contract for a black-box optimizer: ``make_optimizer(space, hp, seed)`` proposes genomes, each
    played as an episode (:func:`play_configuration`) and told its terminal reward, until ``log.episodes >=
    episodes``. After every episode the JSON ``checkpoint`` holds the optimizer's state; ``resume=True`` with an
    existing one continues exactly as an uninterrupted run would (the same seed, hyperparameters and env)."""
    if init_from is not None:
        raise ValueError(f"{agent} has no controller to initialise from a checkpoint (init_from)")
    hyperparams = dataclasses.asdict(hp)
    saved = None
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        saved = json.loads(Path(checkpoint).read_text())
        if saved.get("agent") != agent:
            raise ValueError(f"{checkpoint} is not a {agent} checkpoint")
        if (saved["seed"], saved["hyperparams"]) != (seed, hyperparams):
            raise ValueError(f"{checkpoint} was written with seed {saved['seed']} and hyperparameters "
                             f"{saved['hyperparams']}, not {seed} and {hyperparams}")
    env = env_fn()
    try:
        _, info = env.reset(seed=seed)
        space = decision_space(env, info["layer_table"])
        optimizer = make_optimizer(space, hp, seed)
        if saved is not None:
            if saved["space"] != space.to_dict():
                raise ValueError(f"{checkpoint} was written on another env (decisions and allowed actions differ)")
            optimizer.restore(saved["optimizer"])
            log.episodes = saved["episodes"]
        while log.episodes < episodes:
            genome = optimizer.propose()
            reward, info = play_configuration(env, space, space.actions(genome))
            log.record(reward, info)
            optimizer.observe(genome, reward)
            if checkpoint is not None:
                atomic_write_text(checkpoint, json.dumps({
                    "agent": agent, "seed": seed, "hyperparams": hyperparams, "episodes": log.episodes,
                    "space": space.to_dict(), "optimizer": optimizer.state()}))
    finally:
        env.close()
