"""Scores of a benchmark's runs and their aggregates: the normalized score (0 = random search's expected best at the
same budget, 1 = the best reward there is), evaluations to reach random search's expected best of ``k``, interquartile
means with 95% stratified bootstrap confidence intervals and probabilities of improvement, all through ``rliable``
(the plots: :mod:`ddc_env.lab.benchmark.plots`). Against random search an agent gets two probabilities of
improvement: of a higher final best (normalized score) and of fewer evaluations to the target.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .reference import Reference

__all__ = ["REPS", "SATURATED", "RunCurve", "aggregate", "headroom", "merge_results", "overall",
           "probability_of_improvement", "renormalized", "seeded", "transfer_gain"]

REPS = 2000  # bootstrap replications of every interval (default)


@dataclass(frozen=True)
class RunCurve:
    """The in-budget episodes of one agent-seed run: rewards, cumulative simulated seconds, spec hashes."""

    agent: str
    seed: int
    rewards: np.ndarray
    seconds: np.ndarray
    spec_hashes: tuple[str, ...]

    @property
    def best(self) -> float:
        return float(self.rewards.max()) if len(self.rewards) else -math.inf

    @property
    def best_index(self) -> int:
        """0-based index of the run's first best episode."""
        return int(np.argmax(self.rewards))

    def best_so_far(self, points: np.ndarray) -> np.ndarray:
        """The best reward after each number of evaluations in ``points`` (a run that ended keeps its best)."""
        running = np.maximum.accumulate(self.rewards)
        return running[np.minimum(points, len(running)) - 1]

    def best_by_seconds(self, grid: np.ndarray) -> np.ndarray:
        """The best reward found within each number of simulated seconds of ``grid`` (NaN before the first)."""
        running = np.maximum.accumulate(self.rewards)
        index = np.searchsorted(self.seconds, grid, side="right") - 1
        return np.where(index >= 0, running[np.maximum(index, 0)], np.nan)

    def evaluations_to(self, target: float) -> int | None:
        """The 1-based evaluation at which the run first reached ``target`` (None: never)."""
        hits = np.flatnonzero(self.rewards >= target)
        return int(hits[0]) + 1 if len(hits) else None


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """rliable resamples with numpy's global generator: seed it for reproducible intervals, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _iqm_intervals(columns: Mapping[str, np.ndarray], reps: int
                   ) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Per agent, the IQM of every column of its (runs, metrics) matrix with its 95% stratified bootstrap CI."""
    from rliable import library as rly  # here and below: rliable takes seconds to import, and only scores need it
    from rliable import metrics

    def iqm(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores[:, j]) for j in range(scores.shape[1])])

    with seeded():
        points, intervals = rly.get_interval_estimates(dict(columns), iqm, reps=reps)
    return {k: (points[k].tolist(), intervals[k][0].tolist(), intervals[k][1].tolist()) for k in columns}


SATURATED = 0.99  # random search's expected best at the budget reaches this share of the best known: no headroom


def headroom(results: Mapping[str, Any]) -> float | None:
    """Random search's expected best at the budget as a share of the best known (``zero / one``; None when either
    is missing or not positive): a task at :data:`SATURATED` or above leaves an agent nothing to find."""
    zero, one = results.get("zero"), results.get("one")
    return zero / one if zero is not None and one is not None and zero > 0 and one > 0 else None


def overall(tasks: Mapping[str, Mapping[str, Any]], reps: int = REPS) -> dict[str, Any]:
    """The IQM of normalized scores over every (task, seed) of ``tasks`` (task name -> results), per agent run on all
    of them with the same seeds, with its 95% stratified bootstrap CI (rliable: tasks are the strata)."""
    common = set.intersection(*(set(r["agents"]) for r in tasks.values())) if tasks else set()
    matrices = {}
    for agent in sorted(common):
        columns = [tasks[t]["agents"][agent]["normalized_score"] for t in tasks]
        if len({len(c) for c in columns}) == 1 and not any(math.isnan(x) for c in columns for x in c):
            matrices[agent] = np.array(columns, dtype=float).T  # (seeds, tasks)
    if not matrices:
        return {}
    from rliable import library as rly
    from rliable import metrics

    with seeded():
        points, intervals = rly.get_interval_estimates(matrices, lambda x: np.array([metrics.aggregate_iqm(x)]),
                                                       reps=reps)
    return {a: _estimate(float(points[a][0]), float(intervals[a][0][0]), float(intervals[a][1][0])) for a in matrices}


def transfer_gain(started: Mapping[str, Any], fresh: Mapping[str, Any], reps: int = REPS) -> dict[str, Any]:
    """Per agent in both benchmarks (same env, budget and seeds; ``started`` with a transferred policy, ``fresh``
    without): evaluations to the target (a run that never gets there counts budget + 1), IQM with 95% CI, for each,
    and P(the transferred policy gets there faster) with its CI."""
    budget = fresh["config"]["budget"]
    out: dict[str, Any] = {}
    for agent in sorted(set(started["agents"]) & set(fresh["agents"])):
        runs = {name: np.array([budget + 1 if n is None else n for n in r["agents"][agent]["evaluations_to_target"]],
                               dtype=float) for name, r in (("transferred", started), ("fresh", fresh))}
        if not all(len(v) for v in runs.values()):
            continue
        intervals = _iqm_intervals({k: v[:, None] for k, v in runs.items()}, reps)
        faster = probability_of_improvement({"transferred": -runs["transferred"], "fresh": -runs["fresh"]}, "fresh",
                                            reps)
        p, low, high = faster["transferred"]
        out[agent] = {name: _estimate(intervals[name][0][0], intervals[name][1][0], intervals[name][2][0])
                      for name in runs} | {"faster": {"probability": p, "ci": [low, high]}}
    return out


def probability_of_improvement(scores: Mapping[str, np.ndarray], baseline: str, reps: int = REPS
                               ) -> dict[str, tuple[float, float, float]]:
    """P(agent's score > the baseline's) per agent (``scores``: agent -> one score per run; ties count half), with its
    95% bootstrap CI (runs resampled independently): rliable's probability of improvement."""
    from rliable import library as rly
    from rliable import metrics

    pairs = {k: (v[:, None], scores[baseline][:, None]) for k, v in scores.items() if k != baseline}
    if not pairs:
        return {}
    with seeded():
        points, intervals = rly.get_interval_estimates(
            pairs, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=reps)
    return {k: (float(points[k][0]), float(intervals[k][0][0]), float(intervals[k][1][0])) for k in pairs}


def _estimate(point: float, low: float, high: float) -> dict[str, Any]:
    return {"iqm": point, "ci": [low, high]}


def _summarize(agents: dict[str, dict[str, Any]], zero: float | None, one: float | None, budget: int, reps: int
               ) -> None:
    """Fill in each agent's normalized scores, targets reached, IQMs with CIs and probabilities of improvement over
    random search from its runs' ``best_reward`` and ``evaluations_to_target``."""
    columns, normalized, speed = {}, {}, {}
    for agent, v in agents.items():
        bests, reached = np.array(v["best_reward"], dtype=float), v["evaluations_to_target"]
        to_target = np.array([budget + 1 if n is None else n for n in reached], dtype=float)
        scores = (bests - zero) / (one - zero) if zero is not None else np.full(len(bests), np.nan)
        normalized[agent] = scores
        speed[agent] = -to_target  # fewer evaluations to the target is better
        columns[agent] = np.stack([bests, scores, to_target if len(reached) else np.full(len(bests), np.nan)], 1)
        v.update(normalized_score=scores.tolist(), reached_target=sum(n is not None for n in reached))
    for agent, (points, lows, highs) in _iqm_intervals(columns, reps).items():
        for j, name in enumerate(("best_reward_iqm", "normalized_iqm", "evaluations_to_target_iqm")):
            agents[agent][name] = _estimate(points[j], lows[j], highs[j]) if math.isfinite(points[j]) else None
    if zero is not None and "random" in agents:
        for agent, (p, low, high) in probability_of_improvement(normalized, "random", reps).items():
            agents[agent]["improvement_over_random"] = {"probability": p, "ci": [low, high]}
            agents[agent]["beats_random"] = low > 0.5
        for agent, (p, low, high) in probability_of_improvement(speed, "random", reps).items():
            agents[agent]["faster_than_random"] = {"probability": p, "ci": [low, high]}
            agents[agent]["reaches_target_faster"] = low > 0.5


def aggregate(runs: Mapping[str, Sequence[RunCurve]], reference: Reference | None, *, budget: int,
              budget_seconds: float | None, target_k: int, reps: int = REPS) -> dict[str, Any]:
    """Scores and aggregates of every agent's runs (see the module docstring); ``reference=None`` (a live env without
    random-agent runs) leaves out what needs it."""
    all_runs = [r for agent_runs in runs.values() for r in agent_runs]
    found = max(r.best for r in all_runs)
    zero = one = target = None
    if reference is not None:
        zero = (reference.expected_best(budget) if budget_seconds is None
                else reference.expected_best_within(budget, budget_seconds))
        target = reference.expected_best(target_k)
        one = reference.best if reference.best is not None else max(found, *(o.reward for o in reference.outcomes))
        if not one > zero:
            zero = one = None  # random search finds the best student for sure: nothing to normalize
    agents = {agent: {"seeds": [r.seed for r in agent_runs], "best_reward": [r.best for r in agent_runs],
                      "evaluations_to_target": [r.evaluations_to(target) for r in agent_runs] if target is not None
                      else [],
                      "distinct_students": float(np.mean([len(set(r.spec_hashes)) for r in agent_runs])),
                      "episodes": float(np.mean([len(r.rewards) for r in agent_runs]))}
              for agent, agent_runs in runs.items()}
    _summarize(agents, zero, one, budget, reps)
    return {"zero": zero, "one": one, "target": target, "target_k": target_k, "best_found": found,
            "reference": None if reference is None else {"method": reference.method, "episodes": reference.episodes,
                                                         "students": len(reference.outcomes),
                                                         "best_source": reference.best_source},
            "agents": agents}


_SAME_TASK = ("env_id", "env_kwargs", "seeds", "budget", "budget_seconds", "target_k")
_RUN_FIELDS = ("seeds", "best_reward", "evaluations_to_target", "distinct_students", "episodes")


def merge_results(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One benchmark's results from several benchmark folders of the same task (env, env arguments, seeds, budgets,
    target and random-search reference; a ValueError names what differs), e.g. agents benchmarked at different times:
    every agent's runs side by side, scored again against the common 0 and the best reward of all (when the 1 is
    the best any run found), with intervals and probabilities recomputed. An agent in several parts must have the
    same runs in each (the random agent, deterministic per seed, usually is)."""
    first = parts[0]
    for part in parts[1:]:
        for key in _SAME_TASK:
            if part["config"].get(key) != first["config"].get(key):
                raise ValueError(f"benchmarks of different tasks cannot be merged: {key} is "
                                 f"{first['config'].get(key)!r} in one and {part['config'].get(key)!r} in another")
        if (part["reference"], part["zero"], part["target"]) != (first["reference"], first["zero"], first["target"]):
            raise ValueError("benchmarks with different random-search references cannot be merged")
    agents: dict[str, dict[str, Any]] = {}
    setups: dict[str, Mapping[str, Any]] = {}
    for part in parts:
        for setup in part["config"]["agents"]:
            runs = part["agents"][setup["agent"]]
            kept = agents.get(setup["agent"])
            if kept is not None and (kept["best_reward"], kept["evaluations_to_target"]) != (
                    runs["best_reward"], runs["evaluations_to_target"]):
                raise ValueError(f"agent {setup['agent']!r} has different runs in two of the merged benchmarks")
            if kept is None:
                agents[setup["agent"]] = {k: runs[k] for k in _RUN_FIELDS}
                setups[setup["agent"]] = setup
    fixed_one = first["reference"] is not None and first["reference"]["best_source"] != "the best reward any run found"
    zero = first["zero"]
    one = first["one"] if fixed_one or zero is None else max(part["one"] for part in parts)
    config = {**first["config"], "agents": list(setups.values()),
              "command": "\n".join(dict.fromkeys(part["config"]["command"] for part in parts))}
    _summarize(agents, zero, one, config["budget"], config.get("bootstrap_reps", REPS))
    return {**{k: first[k] for k in ("zero", "target", "target_k", "reference")}, "one": one,
            "best_found": max(part["best_found"] for part in parts), "agents": agents, "config": config}


def renormalized(results: Mapping[str, Any], one: float, best_source: str) -> dict[str, Any]:
    """``results`` scored against another 1 (a best-known student stored with the twin's table after the benchmark
    ran), with intervals and probabilities recomputed; unchanged when it has no 0 (nothing to normalize)."""
    if results["zero"] is None:
        return dict(results)
    agents = {agent: {k: v[k] for k in _RUN_FIELDS} for agent, v in results["agents"].items()}
    _summarize(agents, results["zero"], one, results["config"]["budget"],
               results["config"].get("bootstrap_reps", REPS))
    return {**results, "one": one, "reference": {**results["reference"], "best_source": best_source},
            "agents": agents}
