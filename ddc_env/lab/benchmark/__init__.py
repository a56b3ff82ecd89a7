"""Benchmarks (``ddc benchmark``): every agent x seed on one env id at one budget, scored against random search, with
intervals. One module per job: :mod:`~.config` (what runs, the folder's files), :mod:`~.run` (the runs and everything
written from them), :mod:`~.reference` (random search's reference), :mod:`~.scores` and :mod:`~.plots`,
:mod:`~.validate` (re-scoring claimed results), :mod:`~.report` (markdown) and :mod:`~.leaderboard`.

A benchmark folder holds:

- ``config.yaml``: the resolved :class:`BenchmarkConfig` (env, agents and their hyperparameters, seeds, budgets) and
  the command that reproduces it;
- ``runs/<agent>-seed<k>/``: one ``ddc search`` run folder per agent and seed (resumable, see
  :func:`ddc_env.lab.search.run_search`);
- ``reference.json``: random search's reference (:mod:`ddc_env.lab.benchmark.reference`);
- ``episodes.csv``: every episode of every run (agent, seed, episode, reward, best so far, accuracy, ratios,
  simulated seconds, spec hash);
- ``results.csv``: one row per run, the best student it claims (with what re-scores it: env, choices, training
  seed); ``ddc benchmark validate`` (:func:`validate_results`) checks them;
- ``results.json``, ``results.md`` and the plots ``anytime_evaluations.png``, ``anytime_seconds.png``,
  ``performance_profile.png``.

Example::

    config = make_benchmark_config("DDC-Bench-LeNet5-MNIST-v0", ["random", "reinforce"], seeds=range(10), budget=200)
    results = run_benchmark(config, "runs/bench", jobs=2)
    run_benchmark(None, "runs/bench", resume=True)      # after a kill: finished runs are not redone
    run_benchmark(None, "runs/bench", resume=True, budget=400)  # every run continues to 400 episodes
"""
from .config import (DEFAULT_BUDGET, EPISODES_CSV, PLOTS, REFERENCE_FILE, RESULTS_CSV, RESULTS_JSON, RESULTS_MD,
                     RUNS_DIR, AgentSetup, BenchmarkConfig, make_benchmark_config, read_agent_config,
                     read_benchmark_config)
from .leaderboard import LEADERBOARD_PREAMBLE, render_leaderboard, write_leaderboard
from .reference import Reference, make_reference, reference_from_episodes
from .report import headline, render_section
from .run import EPISODE_COLUMNS, RESULT_COLUMNS, run_benchmark
from .scores import REPS, RunCurve, aggregate
from .validate import format_validation, validate_results

__all__ = ["DEFAULT_BUDGET", "EPISODES_CSV", "EPISODE_COLUMNS", "LEADERBOARD_PREAMBLE", "PLOTS", "REFERENCE_FILE",
           "REPS", "RESULTS_CSV", "RESULTS_JSON", "RESULTS_MD", "RESULT_COLUMNS", "RUNS_DIR", "AgentSetup",
           "BenchmarkConfig", "Reference", "RunCurve", "aggregate", "format_validation", "headline",
           "make_benchmark_config", "make_reference", "read_agent_config", "read_benchmark_config",
           "reference_from_episodes", "render_leaderboard", "render_section", "run_benchmark", "validate_results",
           "write_leaderboard"]
