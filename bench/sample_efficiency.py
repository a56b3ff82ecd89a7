"""Sample efficiency of the search agents: on ``DDC-LeNet5-MNIST`` at ``fast`` fidelity, how many evaluations
(episodes) each agent needs to reach the best reward random search finds in N evaluations with the same seed.

    .venv/bin/python bench/sample_efficiency.py                  # N=100, budget 300, 3 seeds, every agent
    .venv/bin/python bench/sample_efficiency.py --n 20 --budget 60 --seeds 1 --agents reinforce maskable_ppo
    .venv/bin/python bench/sample_efficiency.py --dataset mnist --data-dir ../shared/data/mnist

Each agent runs with the env and hyperparameters of its ``configs/lenet5_mnist_<agent>.yaml`` (where there
is none: the random-search config's env and the agent's default hyperparameters), with the dataset, fidelity, seed and budget set here. All searches of
one seed share one results store (``--out``/seed<k>/results.sqlite), so a student another agent already
evaluated is a cache hit: that favours later agents in wall time, but not in evaluation counts, which count
every episode, cached or not. Prints a markdown table (agent, seed, episodes to the target or ">budget",
final best reward) and writes it with the reward curves to ``--out``/results.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ddc_env.agents import AGENTS, get_agent
from ddc_env.cli.runs import SearchLog
from ddc_env.cli.config import read_yaml
from ddc_env.cli.search import EnvFactory, SearchConfig
from ddc_env.paths import atomic_write_text

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ENV_ID = "DDC-LeNet5-MNIST"
LEARNING_AGENTS = tuple(name for name in AGENTS if name not in ("random", "uniform"))


class CurveLog(SearchLog):
    """A search log without files that keeps every episode's reward."""

    def __init__(self, total_episodes: int, *, progress: bool, desc: str) -> None:
        super().__init__(None, total_episodes, progress=progress, desc=desc)
        self.rewards: list[float] = []

    def record(self, reward: float, info: dict[str, Any]) -> None:
        super().record(reward, info)
        self.rewards.append(float(reward))


def agent_config(agent: str, args: argparse.Namespace, seed: int, episodes: int) -> SearchConfig:
    """The agent's LeNet-5 config (or its defaults) with this benchmark's data, fidelity, seed and budget."""
    path = CONFIGS / f"lenet5_mnist_{agent}.yaml"
    data = read_yaml(path) if path.is_file() else {**read_yaml(CONFIGS / "lenet5_mnist_random.yaml"),
                                                   "agent_kwargs": {}}
    if data["env_id"] != ENV_ID:
        raise ValueError(f"{path} searches {data['env_id']}, not {ENV_ID}")
    env_kwargs = {**(data.get("env_kwargs") or {}), "dataset": args.dataset, "fidelity": args.fidelity,
                  "latency": "flops"}
    if args.data_dir is not None:
        env_kwargs["data_dir"] = args.data_dir
    return SearchConfig.from_dict({**data, "env_kwargs": env_kwargs, "agent": agent, "episodes": episodes,
                                   "seed": seed})


def search(config: SearchConfig, store: Path, *, progress: bool) -> tuple[list[float], float]:
    """Run one search into the shared ``store``; returns its reward per episode and its wall seconds."""
    env_fn = EnvFactory(config.env_id, {**config.env_kwargs, "store": str(store),
                                        "run": f"{config.agent}-seed{config.seed}"})
    log = CurveLog(config.episodes, progress=progress, desc=f"{config.agent} seed {config.seed}")
    start = time.perf_counter()
    try:
        get_agent(config.agent).runner(config.n_envs)(env_fn, episodes=config.episodes, log=log, seed=config.seed,
                                                      **config.agent_kwargs)
    finally:
        log.close()
    return log.rewards[:config.episodes], time.perf_counter() - start


def episodes_to(target: float, rewards: list[float]) -> int | None:
    """1-based index of the first episode whose reward reaches ``target`` (None if none does)."""
    return next((i + 1 for i, r in enumerate(rewards) if r >= target), None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="random-search evaluations that set the target (100)")
    p.add_argument("--budget", type=int, default=300, help="evaluations each agent may spend (300)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..k-1 (3)")
    p.add_argument("--agents", nargs="+", default=list(LEARNING_AGENTS), choices=list(AGENTS), metavar="AGENT",
                   help=f"agents to measure (default: {' '.join(LEARNING_AGENTS)})")
    p.add_argument("--dataset", default="mnist_sample", help="mnist_sample (packaged, default) or mnist")
    p.add_argument("--data-dir", help="folder of mnist_train.npz / mnist_test.npz (default $DDC_DATA_DIR)")
    p.add_argument("--fidelity", default="fast", help="student training fidelity (fast)")
    p.add_argument("--out", default="runs/sample_efficiency", help="results stores and results.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args()
    if min(args.n, args.budget, args.seeds) < 1:
        p.error("--n, --budget and --seeds must be positive")

    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        store = out / f"seed{seed}" / "results.sqlite"
        reference, seconds = search(agent_config("random", args, seed, args.n), store, progress=not args.quiet)
        target = max(reference)
        rows.append({"agent": "random", "seed": seed, "target": target, "episodes": len(reference),
                     "to_target": episodes_to(target, reference), "best": target, "seconds": seconds,
                     "rewards": reference})
        for agent in args.agents:
            rewards, seconds = search(agent_config(agent, args, seed, args.budget), store, progress=not args.quiet)
            rows.append({"agent": agent, "seed": seed, "target": target, "episodes": len(rewards),
                         "to_target": episodes_to(target, rewards), "best": max(rewards), "seconds": seconds,
                         "rewards": rewards})

    lines = [f"{ENV_ID}, dataset {args.dataset}, fidelity {args.fidelity}: episodes each agent needs to reach the "
             f"best reward of {args.n} random-search episodes (same seed), budget {args.budget}",
             "", "| agent | seed | target | episodes to target | final best | wall s |", "|---|---|---|---|---|---|"]
    for r in rows:
        reached = r["to_target"] if r["to_target"] is not None else f">{r['episodes']}"
        lines.append(f"| {r['agent']} | {r['seed']} | {r['target']:.4f} | {reached} | {r['best']:.4f} | "
                     f"{r['seconds']:.0f} |")
    table = "\n".join(lines)
    print(table)
    atomic_write_text(out / "results.json", json.dumps({"args": vars(args), "rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
