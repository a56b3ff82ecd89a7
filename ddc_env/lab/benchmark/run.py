"""``ddc benchmark``: every agent x seed on one env id at one budget, scored against random search, with intervals.

A benchmark folder holds:

- ``config.yaml``: the resolved :class:`BenchmarkConfig` (env, agents and their hyperparameters, seeds, budgets) and
  the command that reproduces it;
- ``runs/<agent>-seed<k>/``: one ``ddc search`` run folder per agent and seed (resumable, see
  :func:`ddc_env.cli.search.run_search`);
- ``reference.json``: random search's reference (:mod:`ddc_env.cli.reference`);
- ``episodes.csv``: every episode of every run (agent, seed, episode, reward, best so far, accuracy, ratios,
  simulated seconds, spec hash);
- ``results.csv``: one row per run, the best student it claims (with what re-scores it: env, choices, training
  seed); ``ddc benchmark --validate`` checks them;
- ``results.json``, ``results.md`` and the plots ``anytime_evaluations.png``, ``anytime_seconds.png``,
  ``performance_profile.png``.

Example::

    config = make_benchmark_config("DDC-Bench-LeNet5-MNIST-v0", ["random", "reinforce"], seeds=range(10), budget=200)
    results = run_benchmark(config, "runs/bench", jobs=2)
    run_benchmark(None, "runs/bench", resume=True)      # after a kill: finished runs are not redone
    run_benchmark(None, "runs/bench", resume=True, budget=400)  # every run continues to 400 episodes
"""
from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import io
import json
import math
import multiprocessing as mp
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from .. import registration
from ..agents import AGENTS, get_agent
from ..paths import atomic_write_text
from ..validate import check_int, check_names, check_number
from .backend import BackendOptions, add_backend_arguments, backend_flags, backend_given, backend_options
from .config import plain, read_yaml, resolve_config_dir, set_dotted
from .reference import Reference, make_reference, reference_from_episodes
from .runs import CONFIG_FILE, SUMMARY_FILE, json_default, locked, prepare_run_dir, read_episodes
from .scores import REPS, RunCurve, aggregate, plot_anytime, plot_profiles
from .search import EnvFactory, SearchConfig, run_search

__all__ = ["AgentSetup", "BenchmarkConfig", "add_benchmark_command", "make_benchmark_config", "read_agent_config",
           "render_leaderboard", "run_benchmark", "validate_results"]

RUNS_DIR = "runs"
REFERENCE_FILE = "reference.json"
EPISODES_CSV, RESULTS_CSV = "episodes.csv", "results.csv"
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
PLOTS = {"evaluations": "anytime_evaluations.png", "seconds": "anytime_seconds.png",
         "profile": "performance_profile.png"}
EPISODE_COLUMNS = ("agent", "seed", "episode", "reward", "best_reward", "val_acc", "acc_ratio", "param_ratio",
                   "flop_ratio", "latency_ratio", "simulated_seconds", "total_simulated_seconds", "cache_hit", "status",
                   "spec_hash", "train_seed")
RESULT_COLUMNS = ("env_id", "env_kwargs", "agent", "seed", "budget", "episodes", "best_episode", "reward", "val_acc",
                  "param_ratio", "flop_ratio", "latency_ratio", "spec_hash", "train_seed", "choices", "choice_tokens",
                  "normalized_score", "evaluations_to_target")
AGENT_CONFIG_KEYS = ("agent", "agent_kwargs", "n_envs")
DEFAULT_BUDGET = 200
TOLERANCE = 1e-9  # |claimed - re-scored| allowed for a validated reward or accuracy


# ------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True, kw_only=True)
class AgentSetup:
    """One agent of a benchmark: its hyperparameters (defaults filled in), ``n_envs`` and the config file they came
    from (None: the agent's defaults)."""

    agent: str
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    n_envs: int = 1
    source: str | None = None


def read_agent_config(path: str | Path, agent: str) -> AgentSetup:
    """An agent's benchmark config: a YAML file with ``agent_kwargs`` (and optionally ``agent``, which must match,
    and ``n_envs``); the env is the benchmark's, so a file naming one is refused."""
    data = read_yaml(path) if Path(path).is_file() else {}
    check_names(data, AGENT_CONFIG_KEYS, f"key(s) in the agent config {path} (the env comes from --env and --set)")
    if data.get("agent", agent) != agent:
        raise ValueError(f"{path} configures agent {data['agent']!r}, not {agent!r}")
    return AgentSetup(agent=agent, agent_kwargs=dict(data.get("agent_kwargs") or {}),
                      n_envs=data.get("n_envs", 1), source=str(path))


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    """What a benchmark runs: every agent of ``agents`` with every seed of ``seeds`` on ``gym.make(env_id,
    **env_kwargs)`` for ``budget`` episodes (evaluations), or until ``budget_seconds`` simulated seconds; the target is
    random search's expected best of ``target_k`` episodes; a twin's sampled reference plays ``reference_samples``
    random episodes; every confidence interval resamples ``bootstrap_reps`` times; ``backend`` is where every run
    evaluates its students (:class:`~ddc_env.cli.backend.BackendOptions` as a mapping); ``command`` reproduces it."""

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agents: tuple[AgentSetup, ...]
    seeds: tuple[int, ...]
    budget: int
    budget_seconds: float | None = None
    target_k: int = 100
    reference_samples: int = 20_000
    bootstrap_reps: int = REPS
    backend: dict[str, Any] = field(default_factory=lambda: BackendOptions().to_dict())
    command: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_id", registration.resolve_id(self.env_id))
        object.__setattr__(self, "backend", BackendOptions.from_dict(self.backend).to_dict())
        check_int(self.budget, "budget", minimum=1)
        check_int(self.target_k, "target_k", minimum=1)
        check_int(self.reference_samples, "reference_samples", minimum=1)
        check_int(self.bootstrap_reps, "bootstrap_reps", minimum=100)
        check_number(self.budget_seconds, "budget_seconds", minimum=0.0, exclusive_minimum=True, optional=True)
        for seed in self.seeds:
            check_int(seed, "seed", minimum=0)
        names = [a.agent for a in self.agents]
        if not names or len(set(names)) != len(names) or len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ValueError(f"a benchmark needs distinct agents and distinct seeds, got {names} and "
                             f"{list(self.seeds)}")
        for setup in self.agents:  # every run's config is checked now, before any folder is written
            self.search_config(setup, self.seeds[0])

    def search_config(self, setup: AgentSetup, seed: int) -> SearchConfig:
        """The ``ddc search`` config of one run."""
        return SearchConfig(env_id=self.env_id, env_kwargs=dict(self.env_kwargs), agent=setup.agent,
                            agent_kwargs=dict(setup.agent_kwargs), episodes=self.budget, seed=seed,
                            n_envs=setup.n_envs, budget_seconds=self.budget_seconds, backend=dict(self.backend))

    def run_dir(self, root: Path, agent: str, seed: int) -> Path:
        return root / RUNS_DIR / f"{agent}-seed{seed}"

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkConfig:
        check_names(data, [f.name for f in dataclasses.fields(cls)], "benchmark config key(s)")
        return cls(**{**data, "agents": tuple(AgentSetup(**a) for a in data["agents"]),
                      "seeds": tuple(data["seeds"])})


def make_benchmark_config(env_id: str, agents: Sequence[str], *, seeds: Sequence[int], budget: int,
                          budget_seconds: float | None = None, env_kwargs: Mapping[str, Any] | None = None,
                          config_dir: str | Path | None = None, configs: Mapping[str, str | Path] | None = None,
                          target_k: int = 100, reference_samples: int = 20_000, bootstrap_reps: int = REPS,
                          backend: Mapping[str, Any] | None = None, command: str = "") -> BenchmarkConfig:
    """A checked benchmark config: each agent's hyperparameters from ``configs[agent]``, else
    ``config_dir/<agent>.yaml`` (a folder, or a folder of the packaged configs such as ``bench/lenet5_mnist``), else
    its defaults."""
    for name in agents:
        get_agent(name)
    unknown = sorted(set(configs or {}) - set(agents))
    if unknown:
        raise ValueError(f"--config for agent(s) {unknown} not in --agents {list(agents)}")
    folder = resolve_config_dir(config_dir) if config_dir is not None else None
    setups = []
    for name in agents:
        path = (configs or {}).get(name) or (folder / f"{name}.yaml" if folder is not None else None)
        if path is not None and (configs or {}).get(name) is not None and not Path(path).is_file():
            raise ValueError(f"--config {name}={path}: no such file")
        setup = read_agent_config(path, name) if path is not None and Path(path).is_file() else AgentSetup(
            agent=name)
        try:
            resolved = get_agent(name).hyperparams(setup.agent_kwargs)
        except ValueError as e:
            raise ValueError(f"agent_kwargs of {name!r}{f' in {setup.source}' if setup.source else ''}: {e}") from None
        setups.append(dataclasses.replace(setup, agent_kwargs=plain(resolved)))
    return BenchmarkConfig(env_id=env_id, env_kwargs=dict(env_kwargs or {}), agents=tuple(setups),
                           seeds=tuple(seeds), budget=budget, budget_seconds=budget_seconds, target_k=target_k,
                           reference_samples=reference_samples, bootstrap_reps=bootstrap_reps,
                           backend=BackendOptions.from_dict(backend).to_dict(), command=command)


def read_benchmark_config(out: Path) -> BenchmarkConfig:
    """The config a benchmark folder was started with."""
    path = out / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{out} is not a benchmark folder: it has no {CONFIG_FILE}")
    data = read_yaml(path)
    if data.get("kind") != "benchmark":
        raise ValueError(f"{path} is not a benchmark config (kind: benchmark)")
    return BenchmarkConfig.from_dict({k: v for k, v in data.items() if k != "kind"})


# ------------------------------------------------------------------------------------------------- runs


def _run_one(config: SearchConfig, run_dir: Path, threads: int) -> None:
    """One agent-seed run with ``threads`` torch threads (restored after); a killed run resumes from its folder."""
    import torch

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
    with tqdm(total=total, initial=total - len(todo), desc="benchmark runs", unit="run", disable=not progress) as bar:
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
    for agent, agent_runs in runs.items():
        scores = results["agents"][agent]
        for i, (curve, lines) in enumerate(agent_runs):
            best = lines[curve.best_index]
            reached = scores["evaluations_to_target"]
            rows.append({**best, "env_id": config.env_id, "env_kwargs": config.env_kwargs, "agent": agent,
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


# ------------------------------------------------------------------------------------------- validation


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def validate_results(path: str | Path) -> dict[str, Any]:
    """Re-score every claimed best student of a ``results.csv`` with its env (a twin: the table or surrogate it was
    scored from, at the claimed training seed) and compare reward, validation accuracy and spec hash; returns the
    counts and one entry per row (``ok``, ``mismatch`` with what differs, or ``skipped`` for a live env, whose
    students would have to be trained again)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--validate {path}: no such file")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = sorted({"env_id", "env_kwargs", "spec_hash", "reward", "val_acc", "choices"} - set(rows[0] if rows
                                                                                             else {}))
    if missing or not rows:
        raise ValueError(f"{path} is not a benchmark results.csv (missing columns {missing} or no rows)")
    envs: dict[str, Any] = {}
    checked = []
    try:
        for row in rows:
            entry = {"agent": row.get("agent"), "seed": row.get("seed"), "spec_hash": row["spec_hash"]}
            env_id, kwargs = row["env_id"], json.loads(row["env_kwargs"] or "{}")
            if registration.is_live(env_id):
                checked.append({**entry, "status": "skipped", "why": "a live env: re-scoring trains the student"})
                continue
            if row.get("train_seed") not in (None, ""):
                seed = int(float(row["train_seed"]))
                kwargs = {**kwargs, "train_seed": "mean" if seed < 0 else seed}
            key = json.dumps([env_id, kwargs], sort_keys=True)
            if key not in envs:
                envs[key] = EnvFactory(env_id, kwargs)()
            env = envs[key].unwrapped
            recorded = json.loads(row.get("choice_tokens") or "null") or json.loads(row["choices"])
            record = env.evaluate_choices(env.task.codec.decode(recorded, json.loads(row.get("kernel_1x1") or "null")))
            problems = [f"spec hash {record['spec_hash']}" if record["spec_hash"] != row["spec_hash"] else ""]
            for name in ("reward", "val_acc"):
                claimed = _number(row[name])
                if claimed is None or not math.isclose(record[name], claimed, rel_tol=0.0, abs_tol=TOLERANCE):
                    problems.append(f"{name} {claimed} claimed, {record[name]} re-scored")
            problems = [p for p in problems if p]
            checked.append({**entry, "status": "mismatch" if problems else "ok", "why": "; ".join(problems)})
    finally:
        for env in envs.values():
            env.close()
    counts = {status: sum(c["status"] == status for c in checked) for status in ("ok", "mismatch", "skipped")}
    return {"file": str(path), **counts, "rows": checked}


# ------------------------------------------------------------------------------------------- reporting


def _fmt(estimate: Mapping[str, Any] | None, digits: int = 3) -> str:
    if estimate is None:
        return "-"
    low, high = estimate["ci"]
    return f"{estimate['iqm']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _probability(scores: Mapping[str, Any], key: str, flag: str) -> str:
    """A probability of improvement over random with its CI, in bold when the CI lies above 0.5."""
    poi = scores.get(key)
    if poi is None:
        return "-"
    text = f"{poi['probability']:.2f} [{poi['ci'][0]:.2f}, {poi['ci'][1]:.2f}]"
    return f"**{text}**" if scores.get(flag) else text


def _config_text(setup: Mapping[str, Any]) -> str:
    source = setup.get("source")
    return f"`{Path(source).parent.name}/{Path(source).name}`" if source else "defaults"


def headline(results: Mapping[str, Any]) -> str:
    """Which agents beat random search (probability of a higher final best, CI above 0.5), the agent fastest to
    random search's expected best of ``target_k``, and which agents meet the target: there within a third of
    ``target_k`` evaluations (IQM over seeds) with a probability of getting there faster than random whose CI lies
    above 0.5."""
    agents = results["agents"]
    if results["zero"] is None or "random" not in agents:
        return "No normalized scores: the reference needs the random agent (live env) or a twin."
    winners = [a for a, v in agents.items() if v.get("beats_random")]
    k, limit = results["target_k"], math.floor(results["target_k"] / 3)
    timed = {a: v["evaluations_to_target_iqm"]["iqm"] for a, v in agents.items()
             if v["evaluations_to_target_iqm"] and a != "random"}
    beaten = (f"Higher final best than random search (probability of improvement, 95% CI above 0.5): "
              f"{', '.join(winners)}." if winners else "No agent ends with a higher best than random search with a "
                                                        "95% CI above 0.5.")
    if not timed:
        return beaten
    fastest = min(timed, key=timed.get)
    faster = agents[fastest]["faster_than_random"]
    met = [a for a in sorted(timed, key=timed.get) if timed[a] <= limit and agents[a]["reaches_target_faster"]]
    return (f"{beaten} Target (random search's expected best of {k}, {results['target']:.4f}, within {limit} "
            f"evaluations, IQM over seeds, faster than random with a 95% CI above 0.5): **{fastest}** gets there in "
            f"{_fmt(agents[fastest]['evaluations_to_target_iqm'], 1)} evaluations, random search in "
            f"{_fmt(agents['random']['evaluations_to_target_iqm'], 1)}; P({fastest} faster than random) = "
            f"{faster['probability']:.2f} [{faster['ci'][0]:.2f}, {faster['ci'][1]:.2f}]. "
            + (f"**Met** by {', '.join(met)}." if met else "**Not met** by any agent."))


def render_section(results: Mapping[str, Any], *, heading: str = "##", plots: str = "") -> str:
    """The markdown of one benchmark: command, configs, reference, the table and the plots (named; shown as images
    from the folder ``plots`` when given)."""
    config = results["config"]
    reference = results.get("reference") or {}
    lines = [f"{heading} {config['env_id']}: {len(config['seeds'])} seeds x {config['budget']} evaluations"
             + (f" (or {config['budget_seconds']:g} simulated seconds)" if config.get("budget_seconds") else ""), "",
             f"```\n{config['command']}\n```", "", headline(results), ""]
    if results["zero"] is not None:
        lines += [f"- 0 = random search's expected best of {config['budget']} episodes: **{results['zero']:.4f}** "
                  f"({reference.get('method')}: {reference.get('students')} students from "
                  f"{reference.get('episodes')} random episodes); 1 = {reference.get('best_source')}: "
                  f"**{results['one']:.4f}**; target = random's expected best of {results['target_k']}: "
                  f"**{results['target']:.4f}**", ""]
    lines += ["| agent | config | best reward, IQM [95% CI] | normalized score, IQM [95% CI] | "
              "P(higher best than random) [95% CI] | evaluations to target, IQM [95% CI] (runs reaching it) | "
              "P(faster to target than random) [95% CI] | distinct students |", "|---|---|---|---|---|---|---|---|"]
    setups = {a["agent"]: a for a in config["agents"]}
    for agent, v in results["agents"].items():
        runs = len(v["seeds"])
        lines.append(f"| {agent} | {_config_text(setups[agent])} | {_fmt(v['best_reward_iqm'], 4)} | "
                     f"{_fmt(v['normalized_iqm'])} | {_probability(v, 'improvement_over_random', 'beats_random')} | "
                     f"{_fmt(v['evaluations_to_target_iqm'], 1)} ({v['reached_target']}/{runs}) | "
                     f"{_probability(v, 'faster_than_random', 'reaches_target_faster')} | "
                     f"{v['distinct_students']:.0f} |")
    validation = results.get("validation")
    if validation:
        lines += ["", f"Validated (`ddc benchmark --validate {RESULTS_CSV}`): {validation['ok']} best students "
                      f"re-scored equal, {validation['mismatch']} mismatches, {validation['skipped']} skipped."]
    lines += ["", "Runs that never reach the target count as budget + 1 evaluations. Plots: "
              + ", ".join(f"`{name}`" for name in PLOTS.values()) + ".", ""]
    if plots:
        lines += [f"![{kind}]({plots}/{name})" for kind, name in PLOTS.items()] + [""]
    lines += ["<details><summary>hyperparameters</summary>", ""]
    for agent, setup in setups.items():
        lines.append(f"- {agent} ({_config_text(setup)}): `{json.dumps(setup['agent_kwargs'], sort_keys=True)}`")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def render_leaderboard(folders: Sequence[str | Path], preamble: str = "", *, at: str | Path = ".") -> str:
    """``LEADERBOARD.md`` from benchmark folders: each folder's results, re-validated now, with its plots linked
    relative to the folder ``at`` (where the file goes); a folder whose best students do not all re-score equal is
    left off with a note."""
    sections = [preamble.rstrip() + "\n"] if preamble else []
    for folder in folders:
        folder = Path(folder)
        results_path = folder / RESULTS_JSON
        if not results_path.is_file():
            raise ValueError(f"{folder} has no {RESULTS_JSON}: run ddc benchmark into it first")
        results = json.loads(results_path.read_text())
        results["validation"] = validate_results(folder / RESULTS_CSV)
        if results["validation"]["mismatch"] or results["validation"]["ok"] == 0:
            sections.append(f"## {results['config']['env_id']}: not on the board\n\n{folder}: "
                            f"{results['validation']['mismatch']} claimed best students do not re-score equal.\n")
            continue
        sections.append(render_section(results, plots=Path(os.path.relpath(folder, at)).as_posix()))
    return "\n".join(sections)


# ------------------------------------------------------------------------------------------------- CLI

LEADERBOARD_PREAMBLE = """# Leaderboard

Generated by `ddc benchmark --leaderboard LEADERBOARD.md --from DIR ...` from benchmark folders made by the command
shown in each section; every claimed best student was re-scored against its twin when this file was written (a result
is reproducible or it is not on the board).

Protocol: every agent runs with every seed at the same evaluation budget (an episode is an evaluation, a repeated
student included). A run's score is the best reward it found. **Normalized score**: 0 = random search's expected best
at the same budget (from the distribution of students a masked random *episode* produces: exact on a tabular twin,
by many random episodes on a surrogate), 1 = the best student of the table (tabular twins; elsewhere the best any run
found). Aggregates are interquartile means (IQM) over seeds with 95% stratified bootstrap confidence intervals and the
probability of improvement over random search, all computed with `rliable`; an agent **beats random** when that
probability's CI lies above 0.5. **Target**: random search's expected best of 100 episodes, to be reached within 33
evaluations (IQM over seeds) with a probability of getting there faster than random search whose CI lies above 0.5.
Agents are tuned on seeds the board does not use (100-109, 100 evaluations); the board uses seeds 0-9. The tuned
hyperparameters ship as `configs/bench/<twin>/<agent>.yaml` (`--config-dir bench/<twin>`), each file's header
listing what was tried and how it scored; agents without a file run with their defaults.
"""


def _env_argument_names(env_id: str) -> list[str]:
    from ..env import EnvConfig
    from ..twins import BenchConfig

    return [f.name for f in dataclasses.fields(EnvConfig if registration.is_live(env_id) else BenchConfig)]


def _pairs(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        agent, sep, path = item.partition("=")
        if not sep or not agent or not path:
            raise ValueError(f"--config takes AGENT=FILE, got {item!r}")
        out[agent] = path
    return out


def _command_line(args: Any, agents: Sequence[str]) -> str:
    parts = ["ddc", "benchmark", "--env", args.env, "--agents", *agents, "--seeds", str(args.seeds),
             *(["--first-seed", str(args.first_seed)] if args.first_seed else []), "--budget", str(args.budget),
             *(["--budget-seconds", f"{args.budget_seconds:g}"] if args.budget_seconds else []),
             *(["--config-dir", args.config_dir] if args.config_dir else []),
             *(p for item in args.config for p in ("--config", item)),
             *(["--set", *args.set] if args.set else []),
             *(["--target-k", str(args.target_k)] if args.target_k != 100 else []),
             *(["--reference-samples", str(args.reference_samples)] if args.reference_samples != 20_000 else []),
             *(["--reps", str(args.reps)] if args.reps != REPS else []),
             *backend_flags(backend_options(args)), "--jobs", str(args.jobs), "--out", args.out]
    return shlex.join(parts)


def _print_validation(report: Mapping[str, Any]) -> None:
    for row in report["rows"]:
        what = f"{row['agent']} seed {row['seed']} {row['spec_hash']}"
        print(f"{row['status']:<8} {what}" + (f": {row['why']}" if row["why"] else ""))
    print(f"{report['file']}: {report['ok']} ok, {report['mismatch']} mismatches, {report['skipped']} skipped")


def _benchmark(args: Any) -> int:
    if args.validate is not None:
        report = validate_results(args.validate)
        _print_validation(report)
        return 1 if report["mismatch"] else 0
    if args.leaderboard is not None:
        if not args.from_dirs:
            raise ValueError("--leaderboard FILE needs --from DIR [DIR ...] (benchmark folders)")
        atomic_write_text(args.leaderboard, render_leaderboard(args.from_dirs, LEADERBOARD_PREAMBLE,
                                                               at=Path(args.leaderboard).resolve().parent))
        print(f"wrote {args.leaderboard} from {', '.join(args.from_dirs)}")
        return 0
    if args.out is None:
        raise ValueError("ddc benchmark needs --out DIR (or --validate / --leaderboard)")
    check_int(args.jobs, "--jobs", minimum=1)
    if args.resume:
        given = [flag for flag, value in (("--env", args.env), ("--agents", args.agents), ("--set", args.set),
                                          ("--config", args.config), ("--config-dir", args.config_dir)) if value]
        if given:
            raise ValueError(f"--resume continues {args.out}/{CONFIG_FILE} as saved; drop {', '.join(given)}")
        backend = backend_options(args, read_benchmark_config(Path(args.out)).backend) if backend_given(args) else None
        results = run_benchmark(None, args.out, resume=True, jobs=args.jobs, progress=not args.quiet,
                                backend=None if backend is None else backend.to_dict(), budget=args.budget)
    else:
        if args.env is None or not args.agents:
            raise ValueError("ddc benchmark needs --env ID and --agents NAME ... (or --resume --out DIR)")
        check_int(args.seeds, "--seeds", minimum=1)
        check_int(args.first_seed, "--first-seed", minimum=0)
        args.budget = DEFAULT_BUDGET if args.budget is None else args.budget
        agents = list(AGENTS) if args.agents == ["all"] else list(args.agents)
        env_kwargs = set_dotted({}, args.set, _env_argument_names(args.env), "env argument")
        config = make_benchmark_config(
            args.env, agents, seeds=range(args.first_seed, args.first_seed + args.seeds), budget=args.budget,
            budget_seconds=args.budget_seconds, env_kwargs=env_kwargs, config_dir=args.config_dir,
            configs=_pairs(args.config), target_k=args.target_k, reference_samples=args.reference_samples,
            bootstrap_reps=args.reps, backend=backend_options(args).to_dict(), command=_command_line(args, agents))
        results = run_benchmark(config, args.out, jobs=args.jobs, progress=not args.quiet)
    print(render_section(results, heading="#"))
    print(f"benchmark folder: {Path(args.out).resolve()} ({RESULTS_MD}, {RESULTS_CSV}, {EPISODES_CSV}, plots)")
    return 0


def add_benchmark_command(commands: Any) -> None:
    """Register ``ddc benchmark``."""
    import argparse

    p = commands.add_parser(
        "benchmark", help="every agent x seed on one env at one budget, scored against random search",
        description="Run every agent with every seed on one env id at one budget (resumable), score each run "
                    "against random search (normalized score, probability of improvement, evaluations to random's "
                    "expected best of --target-k) with IQMs and 95%% stratified bootstrap CIs (rliable), and plot "
                    "anytime curves and performance profiles. Also: --validate a results.csv, or write a "
                    "--leaderboard from benchmark folders.",
        epilog="agents: " + ", ".join(AGENTS) + " (or all)", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", metavar="ID", help="env id, e.g. DDC-Bench-LeNet5-MNIST-v0 (a twin) or a live id")
    p.add_argument("--agents", nargs="+", metavar="NAME", help="agents to compare (all: every built-in one)")
    p.add_argument("--seeds", type=int, default=10, help="seeds per agent (default 10)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0; tune on others, e.g. 100)")
    p.add_argument("--budget", type=int, help=f"evaluations (episodes) per run (default {DEFAULT_BUDGET}); with "
                                              f"--resume, a larger one extends every run")
    p.add_argument("--budget-seconds", type=float, help="also stop a run before its simulated seconds (the live "
                                                        "evaluations' cost) pass this")
    p.add_argument("--config-dir", metavar="DIR", help="agent configs <agent>.yaml (agent_kwargs, n_envs): a folder "
                                                       "or a packaged one, e.g. bench/lenet5_mnist; others: defaults")
    p.add_argument("--config", action="append", default=[], metavar="AGENT=FILE", help="one agent's config "
                                                                                         "(repeatable)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="env arguments, e.g. fidelity=zero")
    p.add_argument("--target-k", type=int, default=100, help="the target: random search's expected best of K "
                                                             "episodes (default 100)")
    p.add_argument("--reference-samples", type=int, default=20_000,
                   help="random episodes of a sampled reference (surrogate twins; default 20000)")
    p.add_argument("--reps", type=int, default=REPS, help=f"bootstrap replications of every interval (default {REPS})")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="runs in parallel processes (default: the CPU count)")
    p.add_argument("--out", metavar="DIR", help="the benchmark folder")
    p.add_argument("--resume", action="store_true", help="continue the benchmark in --out (finished runs are kept)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--validate", metavar="RESULTS_CSV", help="re-score every claimed best student of a results.csv "
                                                             "and flag mismatches (exit code 1)")
    p.add_argument("--leaderboard", metavar="FILE", help="write a leaderboard from the benchmark folders of --from")
    p.add_argument("--from", dest="from_dirs", nargs="+", default=[], metavar="DIR", help="benchmark folders of "
                                                                                            "--leaderboard")
    add_backend_arguments(p)
    p.set_defaults(func=_benchmark)
