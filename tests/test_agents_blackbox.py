"""Tests of the black-box agents (agents.evolution, agents.tpe, agents.cma_es) and the machinery they share
(agents.common: the decision space, play_configuration, run_blackbox), on the tabular LeNet-5 twin (no mocks):

- the decision space is what the one-shot masks allow, and a uniformly random genome gives the students of masked
  random episodes with the same probabilities;
- every agent plays the same students in sequential and one-shot mode, the same episodes for the same seed;
- a run killed after k episodes and resumed plays exactly the episodes of an uninterrupted run (also through
  ``ddc search --resume``);
- each agent beats random search on average over seeds at a small budget;
- bad hyperparameters are one-line ValueErrors before any env is built.
"""
from __future__ import annotations

import collections
import importlib
import itertools
import json
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.agents import AGENTS
from ddc_env.agents.common import decision_space, play_configuration
from ddc_env.agents.random_search import random_search
from ddc_env.cli.main import main
from ddc_env.lab.benchmark.reference import enumerate_episodes
from ddc_env.lab.runs import SearchLog, read_episodes

TWIN = "DDC-Bench-LeNet5-MNIST-v0"
BLACKBOX = ("evolution", "tpe", "cma_es")


class RecordingLog(SearchLog):
    """A SearchLog that also keeps every episode's reward and student, and can stop the run (a kill) before it
    records episode ``kill_at``."""

    def __init__(self, total: int, kill_at: int | None = None) -> None:
        super().__init__(None, total, progress=False)
        self.kill_at = kill_at
        self.episodes_played: list[tuple[float, str]] = []
        self.choices: list[dict[str, float]] = []

    def record(self, reward: float, info: dict[str, Any]) -> None:
        if self.kill_at is not None and self.episodes + 1 == self.kill_at:
            raise KeyboardInterrupt("killed")
        super().record(reward, info)
        self.episodes_played.append((reward, info["spec_hash"]))
        self.choices.append(info["choices"])


def twin(**kwargs: Any) -> gym.Env:
    return gym.make(TWIN, **kwargs)


def module_of(agent: str):
    return importlib.import_module(AGENTS[agent].module)


def play(agent: str, episodes: int, seed: int = 0, **kwargs: Any) -> list[tuple[float, str]]:
    """The (reward, spec hash) of every episode of a run on the twin."""
    env_kwargs = {k: kwargs.pop(k) for k in ("action_mode", "stages") if k in kwargs}
    log = RecordingLog(episodes)
    module_of(agent).run(lambda: twin(**env_kwargs), episodes=episodes, log=log, seed=seed, **kwargs)
    return log.episodes_played


# -- the decision space -----------------------------------------------------------------------------------
def test_the_decision_space_is_what_the_one_shot_masks_allow():
    for mode in ("sequential", "one_shot"):
        env = twin(action_mode=mode)
        _, info = env.reset(seed=0)
        space = decision_space(env, info["layer_table"])
        masks = twin(action_mode="one_shot").unwrapped.action_masks().reshape(len(space.names), -1)
        for j, allowed in enumerate(masks):
            assert sorted([*space.kept[j], *[space.remove] * space.removable[j]]) == np.flatnonzero(allowed).tolist()
        # LeNet-5: conv1 and conv2 have a width each, fc1 and fc2 a removal and a width
        assert [(g.decision, g.removal, g.size) for g in space.genes] == [
            (0, False, 7), (1, False, 7), (2, True, 2), (2, False, 7), (3, True, 2), (3, False, 7)]


def test_a_random_genome_draws_the_students_of_masked_random_episodes():
    """Every genome, equally likely, against every masked random episode (two-stage), equally likely: the same
    distribution of students (spec hashes), exactly."""
    env = twin()
    _, info = env.reset(seed=0)
    space = decision_space(env, info["layer_table"])
    genomes = list(itertools.product(*(range(g.size) for g in space.genes)))
    by_config = collections.Counter(space.actions(genome) for genome in genomes)
    by_student: collections.Counter[str] = collections.Counter()
    for actions, n in by_config.items():
        choices = {name: env.unwrapped.action_choices[a] for name, a in zip(space.names, actions)}
        by_student[env.unwrapped.student_spec(choices).hash()] += n
    outcomes, _ = enumerate_episodes(env)
    assert {o.spec_hash: o.probability for o in outcomes} == pytest.approx(
        {h: n / len(genomes) for h, n in by_student.items()})


def test_play_configuration_refuses_an_action_the_env_forbids():
    env = twin()
    _, info = env.reset(seed=0)
    space = decision_space(env, info["layer_table"])
    with pytest.raises(RuntimeError, match="forbids action 0 for decision 'conv1'"):
        play_configuration(env, space, (space.remove, *space.actions(space.sample(np.random.default_rng(0)))[1:]))


# -- determinism, action modes, resume --------------------------------------------------------------------
@pytest.mark.parametrize("agent", BLACKBOX)
def test_same_seed_same_episodes_in_both_action_modes(agent):
    sequential = play(agent, 40, seed=1)
    assert play(agent, 40, seed=1, action_mode="one_shot") == sequential
    assert play(agent, 40, seed=1, stages="joint") == sequential
    assert play(agent, 40, seed=2) != sequential
    assert len({spec for _, spec in sequential}) > 10


@pytest.mark.parametrize("agent", BLACKBOX)
def test_a_killed_run_resumes_to_the_episodes_of_an_uninterrupted_one(agent, tmp_path):
    """Killed before recording episode 28 (past evolution's first population, TPE's startup trials and CMA-ES's
    first generations, inside one), resumed to 45 episodes: the episodes of a 45-episode run."""
    hp = {"evolution": {"population_size": 10, "sample_size": 3}}.get(agent, {})
    module, ckpt = module_of(agent), tmp_path / "agent.json"
    killed = RecordingLog(45, kill_at=28)
    with pytest.raises(KeyboardInterrupt):
        module.run(twin, episodes=45, log=killed, seed=5, checkpoint=ckpt, **hp)
    assert killed.episodes == 27 and module.saved_episodes(ckpt) == 27
    resumed = RecordingLog(45)
    module.run(twin, episodes=45, log=resumed, seed=5, checkpoint=ckpt, resume=True, **hp)
    assert resumed.episodes == 45 and module.saved_episodes(ckpt) == 45
    assert killed.episodes_played + resumed.episodes_played == play(agent, 45, seed=5, **hp)


@pytest.mark.parametrize("agent", BLACKBOX)
def test_ddc_search_resume_continues_the_same_episodes(agent, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"env_id: {TWIN}\nagent: {agent}\nseed: 3\n")
    run = ["search", "--config", str(config), "--quiet"]
    assert main([*run, "--episodes", "15", "--out", str(tmp_path / "a")]) == 0
    assert main(["search", "--resume", "--episodes", "30", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main([*run, "--episodes", "30", "--out", str(tmp_path / "b")]) == 0
    lines = [[(e["reward"], e["spec_hash"]) for e in read_episodes(tmp_path / d)] for d in ("a", "b")]
    assert len(lines[0]) == 30 and lines[0] == lines[1]
    assert json.loads((tmp_path / "a" / "agent.ckpt").read_text())["episodes"] == 30


def test_evolution_keeps_its_population_ages_it_and_mutates_one_decision(tmp_path):
    """After the first P random episodes every student differs in one decision from one of the P episodes before it
    (its parent, still alive), and the checkpoint's population is the last P episodes, oldest first."""
    log, population = RecordingLog(60), 10
    module_of("evolution").run(twin, episodes=60, log=log, seed=0, checkpoint=tmp_path / "agent.json",
                               population_size=population, sample_size=3)
    state = json.loads((tmp_path / "agent.json").read_text())["optimizer"]
    assert [reward for _, reward in state["population"]] == [r for r, _ in log.episodes_played[-population:]]
    for t in range(population, 60):
        assert any(sum(log.choices[t][name] != parent[name] for name in parent) == 1
                   for parent in log.choices[t - population:t]), t


# -- learning ----------------------------------------------------------------------------------------------
SEEDS = range(200, 210)
# Verified, mean best reward of seeds 200-209 with the default hyperparameters (the table's best student: 0.6398):
# at 40 evaluations tpe 0.6202, cma_es 0.5829, evolution 0.5717, random search 0.5468; at 60 evolution 0.6298,
# tpe 0.6277, cma_es 0.6004 (behind random search there), random search 0.6075. 5 seeds are too few: evolution
# 0.5159 against random's 0.5133 at 30 evaluations on seeds 200-204.
AT_LEAST_RANDOM = {"evolution": 60, "tpe": 40, "cma_es": 40}  # evaluations


@pytest.fixture(scope="module")
def random_rewards() -> list[list[float]]:
    env = twin()
    return [random_search(env, max(AT_LEAST_RANDOM.values()), seed=seed, progress=False).rewards for seed in SEEDS]


@pytest.mark.parametrize("agent", BLACKBOX)
def test_agent_beats_random_search_on_average(agent, random_rewards):
    budget = AT_LEAST_RANDOM[agent]
    best = np.mean([max(r for r, _ in play(agent, budget, seed=seed)) for seed in SEEDS])
    random_best = np.mean([max(rewards[:budget]) for rewards in random_rewards])
    assert best > random_best, f"{agent}: mean best {best:.4f} vs random search {random_best:.4f}"


# -- bad input ---------------------------------------------------------------------------------------------
BAD = [
    ("evolution", {"population_size": -1}, "population_size must be a positive integer, got -1"),
    ("evolution", {"population_size": math.nan}, "population_size must be a positive integer, got nan"),
    ("evolution", {"population_size": 5, "sample_size": 6}, "sample_size must be at most population_size \\(5\\)"),
    ("evolution", {"sample_size": 2.5}, "sample_size must be a positive integer"),
    ("tpe", {"n_startup_trials": -3}, "n_startup_trials must be an integer >= 0"),
    ("tpe", {"multivariate": "yes"}, "multivariate must be true or false"),
    ("cma_es", {"sigma0": math.nan}, "sigma0 must be a finite number > 0"),
    ("cma_es", {"sigma0": 0.0}, "sigma0 must be a finite number > 0"),
    ("cma_es", {"population_size": 1}, "population_size must be an integer >= 2 or None"),
    ("tpe", {"lr": 0.1}, "unknown hyperparameter.*lr.*allowed.*n_startup_trials"),
]


@pytest.mark.parametrize("agent, hyperparams, message", BAD)
def test_bad_hyperparameters_fail_before_any_episode(agent, hyperparams, message):
    def no_env() -> gym.Env:
        raise AssertionError("an env was built")

    with pytest.raises(ValueError, match=message) as error:
        module_of(agent).run(no_env, episodes=5, log=RecordingLog(5), **hyperparams)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=message):  # what ddc search and ddc benchmark check a config with
        AGENTS[agent].hyperparams(hyperparams)


@pytest.mark.parametrize("agent", BLACKBOX)
def test_init_from_and_a_foreign_checkpoint_are_clear_errors(agent, tmp_path):
    with pytest.raises(ValueError, match=f"{agent} has no controller to initialise from a checkpoint"):
        module_of(agent).run(twin, episodes=2, log=RecordingLog(2), init_from=tmp_path / "x.pt")
    other = "tpe" if agent == "evolution" else "evolution"
    module_of(other).run(twin, episodes=2, log=RecordingLog(2), checkpoint=tmp_path / "other.json")
    with pytest.raises(ValueError, match=f"is not a {agent} checkpoint"):
        module_of(agent).run(twin, episodes=4, log=RecordingLog(4), checkpoint=tmp_path / "other.json", resume=True)
    module_of(agent).run(twin, episodes=2, log=RecordingLog(2), checkpoint=tmp_path / "mine.json", seed=1)
    with pytest.raises(ValueError, match="written with seed 1 .* not 2"):
        module_of(agent).run(twin, episodes=4, log=RecordingLog(4), checkpoint=tmp_path / "mine.json", seed=2,
                             resume=True)
