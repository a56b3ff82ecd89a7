"""Running a benchmark: every agent-seed run (``ddc search`` run folders, in parallel processes, resumable), the
random-search reference, the scores, the CSV files, the plots, the validation and ``results.md``."""
from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import io
import json
import multiprocessing as mp
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ... import registration
from ...paths import atomic_write_text
from ...progress import bar_disable
from ...validate import check_int
from ..backend import BackendOptions
from ..runs import CONFIG_FILE, SUMMARY_FILE, json_default, locked, prepare_run_dir, read_episodes
from ..search import EnvFactory, SearchConfig, run_search
from .config import (EPISODES_CSV, PLOTS, REFERENCE_FILE, RESULTS_CSV, RESULTS_JSON, RESULTS_MD, BenchmarkConfig,
                     read_benchmark_config)
from .plots import plot_anytime, plot_profiles
from .reference import Reference, make_reference, reference_from_episodes
from .report import render_section
from .scores import RunCurve, aggregate
from .validate import validate_results

__all__ = ["EPISODE_COLUMNS", "RESULT_COLUMNS", "run_benchmark"]

EPISODE_COLUMNS = ("agent", "seed", "episode", "reward", "best_reward", "val_acc", "acc_ratio", "param_ratio",
                   "flop_ratio", "latency_ratio", "simulated_seconds", "total_simulated_seconds", "cache_hit", "status",
                   "spec_hash", "train_seed")
RESULT_COLUMNS = ("env_id", "env_kwargs", "agent", "seed", "budget", "episodes", "best_episode", "reward", "val_acc",
                  "param_ratio", "flop_ratio", "latency_ratio", "spec_hash", "train_seed", "choices", "choice_tokens",
                  "normalized_score", "evaluations_to_target")


def _run_one(config: SearchConfig, run_dir: Path, threads: int) -> None:
    """One agent-seed run with ``threads`` torch threads (restored after); a killed run resumes from its folder."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run_search(config, run_dir, resume=(run_dir / CONFIG_FILE).is_file(), progress=False)
    finally:
        torch.set_num_threads(before)


def _finished(run_dir: Path, budget: int) -> bool:
    """Whether a run ended (``summary.json``) with a budget of at least ``budget`` episodes."""
    path = run_dir / SUMMARY_FILE
    return path.is_file() and json.loads(path.read_text())["config"]["episodes"] >= budget


def _extended(config: BenchmarkConfig, budget: int) -> BenchmarkConfig:
    """``config`` with a larger ``budget`` (its command says so too)."""
    if budget < config.budget:
        raise ValueError(f"--budget {budget} with --resume: a resumed benchmark can only extend its budget of "
                         f"{config.budget}")
    words = shlex.split(config.command)
    if "--budget" in words:
        words[words.index("--budget") + 1] = str(budget)
    return dataclasses.replace(config, budget=budget, command=shlex.join(words))


def _execute(config: BenchmarkConfig, out: Path, jobs: int, progress: bool) -> None:
    """Run every agent-seed run without a ``summary.json`` yet, in ``jobs`` processes (1: in this process), each
    with one torch thread on a twin (the agent's small networks run fastest so) and the CPU count // ``jobs`` on a
    live env (students train)."""
    todo = [(setup, seed) for setup in config.agents for seed in config.seeds
            if not _finished(config.run_dir(out, setup.agent, seed), config.budget)]
    total = len(config.agents) * len(config.seeds)
    threads = max(1, (os.cpu_count() or 1) // jobs) if registration.is_live(config.env_id) else 1
    with tqdm(total=total, initial=total - len(todo), desc="benchmark runs", unit="run", disable=bar_disable(progress)) as bar:
        if jobs <= 1:
            for setup, seed in todo:
                bar.set_postfix_str(f"{setup.agent} seed {seed}")
                _run_one(config.search_config(setup, seed), config.run_dir(out, setup.agent, seed), threads)
                bar.update()
            return
        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_run_one, config.search_config(setup, seed),
                                   config.run_dir(out, setup.agent, seed), threads): (setup.agent, seed)
                       for setup, seed in todo}
            try:
                for future in cf.as_completed(futures):
                    future.result()
                    bar.set_postfix_str("{} seed {} done".format(*futures[future]))
                    bar.update()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def _costed(lines: Sequence[Mapping[str, Any]], budget_seconds: float | None) -> list[dict[str, Any]]:
    """The episode lines with what each cost the run: ``simulated_seconds`` = its live evaluation seconds the first
    time the run met its student, 0 after (``cache_hit``), whatever the env's in-memory cache had (a resumed twin run
    starts with an empty one); only the lines within ``budget_seconds``."""
    seen: set[str] = set()
    out, total = [], 0.0
    for line in lines:
        spec_hash = line.get("spec_hash")
        repeat = spec_hash is not None and spec_hash in seen
        seen.add(spec_hash)
        cost = 0.0 if repeat else float(line.get("eval_seconds") or 0.0)
        if budget_seconds is not None and total + cost > budget_seconds:
            break
        total += cost
        out.append({**line, "cache_hit": repeat, "simulated_seconds": cost, "total_simulated_seconds": total})
    return out


def _curve(agent: str, seed: int, lines: Sequence[Mapping[str, Any]]) -> RunCurve:
    return RunCurve(agent, seed, np.array([float(e["reward"]) for e in lines]),
                    np.array([e["total_simulated_seconds"] for e in lines]),
                    tuple(str(e.get("spec_hash")) for e in lines))


def _collect(config: BenchmarkConfig, out: Path) -> dict[str, list[tuple[RunCurve, list[dict[str, Any]]]]]:
    """Per agent, every run's curve and episode lines (those within the budgets)."""
    runs: dict[str, list[tuple[RunCurve, list[dict[str, Any]]]]] = {}
    for setup in config.agents:
        for seed in config.seeds:
            lines = _costed(read_episodes(config.run_dir(out, setup.agent, seed))[:config.budget],
                            config.budget_seconds)
            if not lines:
                raise ValueError(f"the {setup.agent} run with seed {seed} has no episode within the budget "
                                 f"(--budget-seconds {config.budget_seconds} is below one evaluation?)")
            runs.setdefault(setup.agent, []).append((_curve(setup.agent, seed, lines), lines))
    return runs


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v, default=json_default) if isinstance(v, (dict, list)) else
                         ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def _episode_rows(runs: Mapping[str, Sequence[tuple[RunCurve, list[dict[str, Any]]]]]) -> list[dict[str, Any]]:
    rows = []
    for agent, agent_runs in runs.items():
        for curve, lines in agent_runs:
            best = np.maximum.accumulate(curve.rewards)
            for i, line in enumerate(lines):
                rows.append({**line, "agent": agent, "seed": curve.seed, "episode": i + 1, "best_reward": best[i]})
    return rows


def _result_rows(config: BenchmarkConfig, runs: Mapping[str, Sequence[tuple[RunCurve, list[dict[str, Any]]]]],
                 results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    setups = {setup.agent: setup for setup in config.agents}
    for agent, agent_runs in runs.items():
        scores = results["agents"][agent]
        env_kwargs = {**config.env_kwargs, **setups[agent].env_kwargs}
        for i, (curve, lines) in enumerate(agent_runs):
            best = lines[curve.best_index]
            reached = scores["evaluations_to_target"]
            rows.append({**best, "env_id": config.env_id, "env_kwargs": env_kwargs, "agent": agent,
                         "seed": curve.seed, "budget": config.budget, "episodes": len(lines),
                         "best_episode": curve.best_index + 1, "normalized_score": scores["normalized_score"][i],
                         "evaluations_to_target": reached[i] if reached else None})
    return rows


def _reference(config: BenchmarkConfig, out: Path, runs: Mapping[str, Sequence[tuple[RunCurve, list[dict]]]] | None
               ) -> Reference | None:
    """A twin's reference (computed once, kept in ``reference.json``); a live env's from the random agent's runs
    (None without them)."""
    path = out / REFERENCE_FILE
    if registration.is_live(config.env_id):
        if runs is None or "random" not in runs:
            return None
        return reference_from_episodes([line for _, lines in runs["random"] for line in lines])
    if path.is_file():
        return Reference.from_dict(json.loads(path.read_text()))
    env = EnvFactory(config.env_id, config.env_kwargs)()
    try:
        reference = make_reference(env, samples=config.reference_samples)
    finally:
        env.close()
    atomic_write_text(path, json.dumps(reference.to_dict()))
    return reference


def run_benchmark(config: BenchmarkConfig | None, out: str | Path, *, resume: bool = False, jobs: int = 1,
                  backend: Mapping[str, Any] | None = None, budget: int | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Run ``config`` into the folder ``out`` (see the module docstring) in ``jobs`` parallel processes and return
    its results; ``resume=True`` continues a killed benchmark from ``out/config.yaml`` (``config`` may be None),
    redoing no finished run, with ``backend`` instead of the saved one if given (records do not depend on it) and
    a larger ``budget`` if given (every run continues to it)."""
    out = Path(out)
    check_int(jobs, "jobs", minimum=1)
    if resume:
        saved = read_benchmark_config(out)
        if config is not None and config != saved:
            raise ValueError(f"--resume continues {out / CONFIG_FILE} as saved; give --out (and --jobs) only")
        config = saved if backend is None else dataclasses.replace(saved, backend=dict(backend))
        config = config if budget is None else _extended(config, budget)
    elif config is None or budget is not None:
        raise ValueError("run_benchmark takes a config (and no budget) unless resume=True")
    options = BackendOptions.from_dict(config.backend)
    if options.name == "ray" and options.address is None and jobs > 1:
        raise ValueError("--backend ray with --jobs > 1 needs a running cluster (ray start --head; --address "
                         "host:6379): each job would start its own local Ray instance")
    prepare_run_dir(out, resume=resume)
    with locked(out):
        atomic_write_text(out / CONFIG_FILE, yaml.safe_dump({"kind": "benchmark", **config.to_dict()},
                                                           sort_keys=False))
        if not registration.is_live(config.env_id):  # before the runs: a bad twin fails early
            _reference(config, out, None)
        _execute(config, out, min(jobs, len(config.agents) * len(config.seeds)), progress)
        runs = _collect(config, out)
        reference = _reference(config, out, runs)
        curves = {agent: [curve for curve, _ in agent_runs] for agent, agent_runs in runs.items()}
        results = aggregate(curves, reference, budget=config.budget, budget_seconds=config.budget_seconds,
                            target_k=config.target_k, reps=config.bootstrap_reps)
        results["config"] = config.to_dict()
        atomic_write_text(out / EPISODES_CSV, _csv(_episode_rows(runs), EPISODE_COLUMNS))
        atomic_write_text(out / RESULTS_CSV, _csv(_result_rows(config, runs, results), RESULT_COLUMNS))
        title = f"{config.env_id}, {len(config.seeds)} seeds"
        plot_anytime(curves, reference, budget=config.budget, title=title,
                     out_evaluations=out / PLOTS["evaluations"], out_seconds=out / PLOTS["seconds"],
                     reps=config.bootstrap_reps)
        if results["zero"] is not None:
            plot_profiles({a: np.array(v["normalized_score"]) for a, v in results["agents"].items()}, title=title,
                          out=out / PLOTS["profile"], reps=config.bootstrap_reps)
        results["validation"] = validate_results(out / RESULTS_CSV)
        atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=1, default=json_default))
        atomic_write_text(out / RESULTS_MD, render_section(results, heading="#"))
    return results

