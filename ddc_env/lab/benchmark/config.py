"""What a benchmark runs (:class:`BenchmarkConfig`: env, agents and their hyperparameters, seeds, budgets, backend)
and the files of a benchmark folder."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import registration
from ...agents import get_agent
from ...validate import check_int, check_names, check_number
from ..backend import BackendOptions
from ..config import plain, read_yaml, resolve_config_dir
from ..runs import CONFIG_FILE
from ..search import SearchConfig
from .scores import REPS

__all__ = ["DEFAULT_BUDGET", "EPISODES_CSV", "PLOTS", "REFERENCE_FILE", "RESULTS_CSV", "RESULTS_JSON", "RESULTS_MD",
           "RUNS_DIR", "AgentSetup", "BenchmarkConfig", "make_benchmark_config", "read_agent_config",
           "read_benchmark_config"]

# the files of a benchmark folder (besides config.yaml)
RUNS_DIR = "runs"
REFERENCE_FILE = "reference.json"
EPISODES_CSV, RESULTS_CSV = "episodes.csv", "results.csv"
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
PLOTS = {"evaluations": "anytime_evaluations.png", "seconds": "anytime_seconds.png",
         "profile": "performance_profile.png"}
AGENT_CONFIG_KEYS = ("agent", "agent_kwargs", "n_envs", "env_kwargs")
# the env arguments an agent may set for its own runs: how it acts, not which students there are or how they score
ACTING_KWARGS = ("action_mode", "stages", "masked_action", "remove_below")
DEFAULT_BUDGET = 200


@dataclass(frozen=True, kw_only=True)
class AgentSetup:
    """One agent of a benchmark: its hyperparameters (defaults filled in), ``n_envs``, the config file they came
    from (None: the agent's defaults), ``init_from``: another run's agent checkpoint every run of it starts from
    (policy transfer: a policy pre-trained on another task), and ``env_kwargs``: how its envs act, over the
    benchmark's (:data:`ACTING_KWARGS` only, e.g. AMC's agents' ``action_mode: continuous``: the same students and
    rewards, so every agent is scored against the same reference)."""

    agent: str
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    n_envs: int = 1
    source: str | None = None
    init_from: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_names(self.env_kwargs, ACTING_KWARGS, f"env_kwargs of agent {self.agent!r} (an agent sets how it acts; "
                                                    f"the task is the benchmark's: --env and --set)")


def read_agent_config(path: str | Path, agent: str) -> AgentSetup:
    """An agent's benchmark config: a YAML file with ``agent_kwargs`` (and optionally ``agent``, which must match,
    ``n_envs`` and ``env_kwargs``: how its envs act, :data:`ACTING_KWARGS`); the env is the benchmark's, so a file
    naming one is refused."""
    data = read_yaml(path) if Path(path).is_file() else {}
    check_names(data, AGENT_CONFIG_KEYS, f"key(s) in the agent config {path} (the env comes from --env and --set)")
    if data.get("agent", agent) != agent:
        raise ValueError(f"{path} configures agent {data['agent']!r}, not {agent!r}")
    try:
        return AgentSetup(agent=agent, agent_kwargs=dict(data.get("agent_kwargs") or {}), n_envs=data.get("n_envs", 1),
                          source=str(path), env_kwargs=dict(data.get("env_kwargs") or {}))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    """What a benchmark runs: every agent of ``agents`` with every seed of ``seeds`` on ``gym.make(env_id,
    **env_kwargs)`` for ``budget`` episodes (evaluations), or until ``budget_seconds`` simulated seconds; the target is
    random search's expected best of ``target_k`` episodes; a twin's sampled reference plays ``reference_samples``
    random episodes; every confidence interval resamples ``bootstrap_reps`` times; ``backend`` is where every run
    evaluates its students (:class:`~ddc_env.lab.backend.BackendOptions` as a mapping); ``command`` reproduces it."""

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
        return SearchConfig(env_id=self.env_id, env_kwargs={**self.env_kwargs, **setup.env_kwargs}, agent=setup.agent,
                            agent_kwargs=dict(setup.agent_kwargs), episodes=self.budget, seed=seed,
                            n_envs=setup.n_envs, budget_seconds=self.budget_seconds, backend=dict(self.backend),
                            init_from=setup.init_from)

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
                          backend: Mapping[str, Any] | None = None, command: str = "",
                          init_from: Mapping[str, str | Path] | None = None) -> BenchmarkConfig:
    """A checked benchmark config: each agent's hyperparameters from ``configs[agent]``, else
    ``config_dir/<agent>.yaml`` (a folder, or a folder of the packaged configs such as ``bench/lenet5_mnist``), else
    its defaults; ``init_from[agent]``: the checkpoint its runs start from (a transfer benchmark). An agent that acts
    in one action_mode only (ddpg, td3, sac: "continuous"; dqn: "sequential") runs in it unless ``env_kwargs`` or its
    config sets another, which is a ValueError."""
    unknown = sorted(set(init_from or {}) - set(agents))
    if unknown:
        raise ValueError(f"--init-from for agent(s) {unknown} not in --agents {list(agents)}")
    for name, path in (init_from or {}).items():
        if not (Path(path).is_file() or Path(f"{path}.zip").is_file()):
            raise ValueError(f"--init-from {name}={path}: no such checkpoint (another run's agent.ckpt)")
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
        start = (init_from or {}).get(name)
        acting = {**_own_mode(name, {**(env_kwargs or {}), **setup.env_kwargs}), **setup.env_kwargs}
        setups.append(dataclasses.replace(setup, agent_kwargs=plain(resolved), env_kwargs=plain(acting),
                                          init_from=None if start is None else str(Path(start).resolve())))
    return BenchmarkConfig(env_id=env_id, env_kwargs=dict(env_kwargs or {}), agents=tuple(setups),
                           seeds=tuple(seeds), budget=budget, budget_seconds=budget_seconds, target_k=target_k,
                           reference_samples=reference_samples, bootstrap_reps=bootstrap_reps,
                           backend=BackendOptions.from_dict(backend).to_dict(), command=command)


def _own_mode(agent: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"action_mode": mode}`` when ``agent`` acts in one mode only and ``env_kwargs`` set none; a ValueError when
    they set another."""
    mode = get_agent(agent).action_mode
    if mode is None:
        return {}
    given = env_kwargs.get("action_mode", mode)
    if given != mode:
        raise ValueError(f"{agent} acts in action_mode={mode!r}, not {given!r}: leave action_mode out of --set (each "
                         f"agent then runs in its own) or set it per agent in its config's env_kwargs")
    return {} if "action_mode" in env_kwargs else {"action_mode": mode}


def read_benchmark_config(out: Path) -> BenchmarkConfig:
    """The config a benchmark folder was started with."""
    path = out / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{out} is not a benchmark folder: it has no {CONFIG_FILE}")
    data = read_yaml(path)
    if data.get("kind") != "benchmark":
        raise ValueError(f"{path} is not a benchmark config (kind: benchmark)")
    return BenchmarkConfig.from_dict({k: v for k, v in data.items() if k != "kind"})

