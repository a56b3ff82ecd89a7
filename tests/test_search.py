"""`ddc search` and the search orchestration (agents.search): configs, run folders, kill-and-resume, errors.
Synthetic data and the session's LeNet-5 teacher (tests/conftest.py), smoke fidelity, FLOP-timed."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ddc_env.scoring import LiveScorer
from ddc_env.agents import AGENTS
from ddc_env.lab.config import parse_scalar
from ddc_env.lab.runs import RunLog, locked, read_episodes
from ddc_env.lab.search import EnvFactory, SearchConfig, load_config, read_run_config, run_search
from ddc_env.arch import NetSpec, apply_decisions, build, uniform_choices
from ddc_env.cli import main

REPO = Path(__file__).resolve().parents[1]


def _write_config(tmp_path: Path, synth_teacher, synth_dir, name: str = "smoke.yaml", **top) -> Path:
    """A search config on the synthetic LeNet-5 teacher at smoke fidelity."""
    config = {"env_id": "DDC-LeNet5-MNIST",
              "env_kwargs": {"teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
                             "fidelity": "smoke", "latency": "flops", "device": "cpu"},
              "agent": "random", "episodes": 3, "seed": 0, **top}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _episode_hashes(run_dir: Path) -> set[str]:
    """Spec hashes of the students of the run's episodes."""
    return {json.loads(line)["spec_hash"] for line in (run_dir / "episodes.jsonl").read_text().splitlines()}


def _store_hashes(run_dir: Path) -> list[str]:
    """Spec hashes of the run's results store, in insertion order (none while the store is being created)."""
    with contextlib.closing(sqlite3.connect(run_dir / "results.sqlite")) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT spec_hash FROM evaluations ORDER BY rowid")]
        except sqlite3.OperationalError:  # no table yet
            return []


def _records(run_dir: Path) -> list[dict]:
    with contextlib.closing(sqlite3.connect(run_dir / "results.sqlite")) as conn:
        return [json.loads(r[0]) for r in conn.execute("SELECT record FROM evaluations ORDER BY rowid")]


# ----------------------------------------------------------------------------------------------- configs


def test_load_config_applies_dotted_overrides(tmp_path, synth_teacher, synth_dir):
    path = _write_config(tmp_path, synth_teacher, synth_dir, agent="reinforce",
                         agent_kwargs={"rollouts": 2, "removal_lr": "1e-3"})
    config = load_config(path, ["env_kwargs.fidelity=zero", "agent_kwargs.shrink_lr=3e-4", "episodes=20",
                                "env_kwargs.reward.name=n2n", "seed=7"])
    assert isinstance(config, SearchConfig)
    assert config.env_kwargs["fidelity"] == "zero" and config.env_kwargs["reward"] == {"name": "n2n"}
    assert (config.episodes, config.seed, config.n_envs, config.init_from) == (20, 7, 1, None)
    # YAML 1.1 would read 1e-3 as a string: both the file and the overrides read it as a float
    assert config.agent_kwargs["shrink_lr"] == 3e-4 and config.agent_kwargs["removal_lr"] == 1e-3
    # the agent's defaults are filled in (the resolved config), the given values kept
    assert config.agent_kwargs["rollouts"] == 2 and config.agent_kwargs["hidden"] == 30
    assert parse_scalar("[0.5, 1.0]") == [0.5, 1.0] and parse_scalar("true") is True
    assert SearchConfig.from_dict(config.to_dict()) == config


def test_changing_the_agent_drops_the_configs_agent_kwargs(tmp_path, synth_teacher, synth_dir):
    path = _write_config(tmp_path, synth_teacher, synth_dir, agent="reinforce", agent_kwargs={"rollouts": 2})
    with pytest.warns(UserWarning, match=r"agent_kwargs \['rollouts'\] are dropped"):
        config = load_config(path, ["agent=ppo", "agent_kwargs.n_epochs=2"])
    assert config.agent == "ppo" and config.agent_kwargs["n_epochs"] == 2


@pytest.mark.parametrize("top, overrides, message", [
    ({"episods": 3}, [], "unknown search config key(s) ['episods']; allowed: ['env_id'"),
    ({}, ["episods=3"], "unknown search config key 'episods'"),
    ({}, ["episodes"], "an override is key=value"),
    ({}, ["episodes=0"], "episodes must be a positive integer"),
    ({}, ["agent=sarsa"], "unknown agent 'sarsa'; allowed: reinforce"),
    ({"agent": None}, [], "needs agent (or pass --agent)"),
    ({}, ["env_id=DDC-Nope"], "unknown env_id 'DDC-Nope'"),
    ({}, ["env_kwargs.fidelty=smoke"], "env_kwargs: unknown DDCEnv argument(s) ['fidelty']"),
    ({}, ["env_kwargs.fidelity=ultra"], "unknown fidelity 'ultra'"),
    ({}, ["env_kwargs.fidelity.epochs=2"], "cannot set env_kwargs.fidelity.epochs: env_kwargs.fidelity is 'smoke'"),
    ({}, ["agent_kwargs.lr=0.1"], "agent_kwargs of 'random': unknown hyperparameter(s) ['lr']"),
    ({}, ["agent=reinforce", "agent_kwargs.schedule=sideways"], "unknown schedule 'sideways'"),
    ({}, ["n_envs=2"], "n_envs=2: only the stable-baselines3 agents"),
    ({}, ["agent=actor_critic", "agent_kwargs.lr=.nan"], "agent_kwargs of 'actor_critic': lr must be a finite number "
                                                        "> 0, got nan"),
    ({}, ["agent=reinforce", "agent_kwargs.rollouts=2.5"], "rollouts must be a positive integer, got 2.5"),
    ({}, ["agent=ppo", "agent_kwargs.learning_rate=-0.1"], "learning_rate must be a finite number > 0, got -0.1"),
    ({}, ["agent=dqn", "agent_kwargs.train_freq=often"], "train_freq must be a positive integer, got 'often'"),
    ({}, ["env_kwargs.fidelity={name: smoke, epochs: 1.5}"], "fidelity epochs must be an integer >= 0, got 1.5"),
    ({}, ["env_kwargs.device=gpu"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
])
def test_bad_configs_name_the_bad_value(tmp_path, synth_teacher, synth_dir, top, overrides, message):
    path = _write_config(tmp_path, synth_teacher, synth_dir, **top)
    with pytest.raises(ValueError) as e:
        load_config(path, overrides)
    assert message in str(e.value)


# -------------------------------------------------------------------------------------- ddc search, e2e


def test_search_random_writes_the_whole_run_folder(tmp_path, synth_teacher, synth_dir, capsys):
    config = _write_config(tmp_path, synth_teacher, synth_dir)
    out = tmp_path / "run"
    assert main(["search", "--config", str(config), "--out", str(out), "--episodes", "4", "--seed", "1",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"run folder: {out.resolve()}" in printed and f"tensorboard --logdir {out / 'tensorboard'}" in printed
    assert "best student (episode" in printed

    for name in ("config.yaml", "results.sqlite", "agent.ckpt", "best.json", "progress.json", "best_student.json",
                 "best_student.pt", "summary.json"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    saved = read_run_config(out)
    assert (saved.agent, saved.episodes, saved.seed) == ("random", 4, 1)
    assert saved.env_kwargs["store"] == str((out / "results.sqlite").resolve()) and saved.env_kwargs["run"] == "run"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["seeds"]["search"] == 1
    # the store holds the episodes' students and the calibrated reward's three uniform reference students
    assert summary["evaluations"] == len(_store_hashes(out)) <= 4 - summary["cache_hits"] + 3
    assert _episode_hashes(out) <= set(_store_hashes(out))
    assert summary["best_reward"] == json.loads((out / "best.json").read_text())["reward"]
    assert summary["wall_seconds"] > 0 and summary["teacher"]["path"] == str(synth_teacher.path)

    spec = NetSpec.from_json((out / "best_student.json").read_text())
    assert spec.hash() == summary["best_info"]["spec_hash"] == summary["best_student"]["spec_hash"]
    student = build(spec)
    student.load_state_dict(torch.load(out / "best_student.pt", weights_only=True), strict=True)


def test_search_uniform_plays_each_width_once(tmp_path, synth_teacher, synth_dir, capsys):
    config = _write_config(tmp_path, synth_teacher, synth_dir)
    out = tmp_path / "uniform"
    assert main(["search", "--config", str(config), "--agent", "uniform", "--out", str(out), "--quiet",
                 "--set", "env_kwargs.width_choices=[0.25, 0.5, 1.0]", "--episodes", "10"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["config"]["agent"] == "uniform"  # one per width below 1.0
    assert (out / "best_student.pt").is_file()
    # the same students as the uniform_choices reference of ddc quickstart (LeNet preset: channels rounded to 2)
    spec = synth_teacher.spec
    assert _store_hashes(out) == [apply_decisions(spec, uniform_choices(spec, w), channel_round=2,
                                                  min_channels=2).hash() for w in (0.25, 0.5)]
    assert [r["params"] for r in _records(out)] == sorted(r["params"] for r in _records(out))


def test_killed_search_resumes_without_recomputing(tmp_path, synth_teacher, synth_dir, monkeypatch, capsys):
    episodes = 7
    config = _write_config(tmp_path, synth_teacher, synth_dir, episodes=episodes)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ddc_env", "search", "--config", str(config), "--out",
                                 str(out), "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "results.sqlite").is_file() and len(_store_hashes(out)) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"the search ended before it was killed: {stderr.read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = _store_hashes(out)
    assert 2 <= len(before) < episodes and not (out / "summary.json").exists()

    trained = []  # spec hashes the resumed search trains
    original = LiveScorer.evaluate

    def spy(self, spec):
        trained.append(spec.hash())
        return original(self, spec)

    monkeypatch.setattr(LiveScorer, "evaluate", spy)
    assert main(["search", "--resume", "--out", str(out), "--quiet"]) == 0
    assert trained and not set(trained) & set(before)  # no finished evaluation is recomputed
    after = _store_hashes(out)
    assert after[:len(before)] == before and len(after) == len(before) + len(trained)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == episodes and summary["evaluations"] == len(after)
    assert json.loads((out / "agent.ckpt").read_text())["episodes"] == episodes

    # the resumed random search drew exactly the students an uninterrupted one draws (students do not depend
    # on the fidelity: check against a cheap zero-fidelity run of the same seed)
    ref = tmp_path / "reference"
    assert main(["search", "--config", str(config), "--out", str(ref), "--quiet",
                 "--set", "env_kwargs.fidelity=zero"]) == 0
    assert _episode_hashes(ref) == _episode_hashes(out)  # (stores differ by the calibration's references)

    # extend a finished search: only the new episodes run
    assert main(["search", "--resume", "--out", str(out), "--episodes", str(episodes + 1), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["episodes"] == episodes + 1
    capsys.readouterr()


def test_progress_counts_cache_hits_once_after_a_resume(tmp_path, synth_teacher, synth_dir, monkeypatch, capsys):
    """A search killed between two agent checkpoints replays the episodes after the last one; progress.json counts
    each episode's cache hit once, as episodes.jsonl does (it used to carry over the killed session's count)."""
    config = _write_config(tmp_path, synth_teacher, synth_dir, agent="reinforce", episodes=9,
                           agent_kwargs={"rollouts": 3})
    out = tmp_path / "run"
    few = ["--set", "env_kwargs.width_choices=[1.0]", "env_kwargs.fidelity=zero"]  # 4 students: many cache hits
    original = RunLog.record

    def killed_after_seven(self, reward, info):
        original(self, reward, info)
        if self.episodes == 7:  # the agent checkpointed after episode 6
            raise KeyboardInterrupt

    monkeypatch.setattr(RunLog, "record", killed_after_seven)
    assert main(["search", "--config", str(config), "--out", str(out), "--quiet", *few]) == 130
    killed = json.loads((out / "progress.json").read_text())
    assert killed["episodes"] == 7 and read_episodes(out)[-1]["cache_hit"]  # the episode replayed is a hit
    monkeypatch.setattr(RunLog, "record", original)

    assert main(["search", "--resume", "--out", str(out), "--quiet"]) == 0
    episodes = read_episodes(out)
    assert [e["episode"] for e in episodes] == list(range(1, 10))
    hits = sum(e["cache_hit"] for e in episodes)
    assert json.loads((out / "progress.json").read_text())["cache_hits"] == hits
    assert json.loads((out / "summary.json").read_text())["cache_hits"] == hits
    capsys.readouterr()


# ------------------------------------------------------------------------------------------------ errors


def test_a_second_search_on_a_run_folder_in_use_fails_at_once(tmp_path, synth_teacher, synth_dir, monkeypatch,
                                                               capsys):
    """While one process searches into a folder, a second ``--resume`` on it fails before building anything (it
    used to build its env first) and writes nothing."""
    config = _write_config(tmp_path, synth_teacher, synth_dir, episodes=2)
    out = tmp_path / "run"
    assert main(["search", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    before = (out / "episodes.jsonl").read_text()
    capsys.readouterr()
    built = []
    monkeypatch.setattr(EnvFactory, "__call__", lambda self: built.append(self.env_id))
    with locked(out):  # what a running search holds
        assert main(["search", "--resume", "--out", str(out), "--episodes", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is in use by another process" in err and len(err.strip().splitlines()) == 1
    assert built == [] and (out / "episodes.jsonl").read_text() == before


def test_a_new_search_needs_an_empty_run_folder(tmp_path, synth_teacher, synth_dir, capsys):
    config = _write_config(tmp_path, synth_teacher, synth_dir)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["search", "--config", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the run folder" in err and "is not empty: pass --resume" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="is not empty"):
        run_search(load_config(config), out)
    with pytest.raises(ValueError, match="needs a config"):
        run_search(None, tmp_path / "new")


def test_resume_refuses_a_changed_config(tmp_path, synth_teacher, synth_dir, capsys):
    config = _write_config(tmp_path, synth_teacher, synth_dir, episodes=1)
    out = tmp_path / "done"
    assert main(["search", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", "--resume", "--out", str(out), "--set", "env_kwargs.fidelity=zero", "--quiet"]) == 2
    assert "only episodes and the backend may change, but env_kwargs differs" in capsys.readouterr().err
    # the same command line again with --resume is fine (nothing left to do)
    assert main(["search", "--config", str(config), "--out", str(out), "--resume", "--quiet"]) == 0


def test_backend_options_from_config_and_flags(tmp_path, synth_teacher, synth_dir):
    """A config's backend (default local) under the command-line flags; bad options name what is allowed."""
    import argparse

    from ddc_env.cli.backend_args import add_backend_arguments, backend_options
    from ddc_env.lab.backend import BackendOptions

    config = load_config(_write_config(tmp_path, synth_teacher, synth_dir))
    assert config.backend == BackendOptions().to_dict() and config.backend["name"] == "local"
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    ray_config = {"name": "ray", "address": "head:6379", "workers": 8}
    assert backend_options(parser.parse_args(["--workers", "2"]), ray_config) == BackendOptions(
        "ray", "head:6379", 2)  # a flag changes one option of the saved backend
    assert backend_options(parser.parse_args(["--backend", "local"]), ray_config) == BackendOptions()
    for data, message in (({"name": "dask"}, "unknown backend 'dask'"),
                          ({"name": "ray", "nodes": 2}, r"unknown backend key\(s\) \['nodes'\]"),
                          ({"workers": 2}, "--workers only apply to the ray backend"),
                          ({"name": "ray", "gpus_per_worker": -1}, "gpus_per_worker must be")):
        with pytest.raises(ValueError, match=message):
            BackendOptions.from_dict(data)
    with pytest.raises(ValueError, match=r"unknown backend 'dask'; allowed: \['local', 'ray'\]"):
        load_config(_write_config(tmp_path, synth_teacher, synth_dir, backend={"name": "dask"}))


def test_resume_may_change_the_backend(tmp_path, synth_teacher, synth_dir, capsys):
    """A run recorded with the Ray backend continues on this machine with --backend local (records do not depend
    on where they were computed); config.yaml then records the local backend."""
    out = tmp_path / "run"
    assert main(["search", "--config", str(_write_config(tmp_path, synth_teacher, synth_dir)), "--out", str(out),
                 "--episodes", "1", "--quiet"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    saved["backend"] = {"name": "ray", "address": "head:6379", "workers": 4}  # as a Ray run would have it
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert read_run_config(out).backend["address"] == "head:6379"
    assert main(["search", "--resume", "--out", str(out), "--episodes", "2", "--backend", "local", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["config"]["backend"]["name"] == "local"
    assert summary["scorer"]["backend"] == "LiveScorer" and read_run_config(out).backend["name"] == "local"
    capsys.readouterr()


def test_resuming_a_search_killed_before_its_config_was_written_says_to_start_it(tmp_path, capsys):
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / ".lock").write_text("")  # what a search killed at once leaves behind
    assert main(["search", "--resume", "--out", str(killed)]) == 2
    err = capsys.readouterr().err
    assert "nothing was evaluated" in err and "without --resume" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["search", "--agent", "random"], "the following arguments are required: --config"),
    (["search", "--resume"], "--resume needs --out RUN_DIR"),
    (["search", "--config", "CONFIG", "--agent", "sarsa"], "unknown --agent 'sarsa'; allowed: reinforce"),
    (["search", "--config", "missing.yaml"], "no config file missing.yaml"),
    (["search", "--config", "CONFIG", "--set", "env_kwargs.dataset=nope"], "unknown dataset 'nope'"),
    (["search", "--config", "CONFIG", "--init-from", "missing.ckpt"], "missing.ckpt: no such file"),
    (["search", "--resume", "--out", "OUT"], "is not a run folder: it has no config.yaml"),
    (["search", "--config", "CONFIG", "--episodes", "0"], "must be a positive integer"),
    (["search", "--config", "CONFIG", "--agent", "actor_critic", "--set", "agent_kwargs.lr=nan", "--out", "OUT"],
     "lr must be a finite number > 0, got 'nan'"),
    (["search", "--config", "CONFIG", "--set", "env_kwargs.fidelity={name: smoke, lr: -0.1}", "--out", "OUT"],
     "fidelity lr must be a finite number > 0, got -0.1"),
    (["search", "--config", "CONFIG", "--set", "env_kwargs.device=gpu", "--out", "OUT"], "device must be 'auto'"),
    (["search", "--config", "CONFIG", "--set", "env_kwargs.teacher=missing.pt", "--out", "OUT"],
     "teacher checkpoint missing.pt does not exist"),
])
def test_bad_search_input_is_one_line_and_exit_2(argv, message, tmp_path, synth_teacher, synth_dir, capsys,
                                                 monkeypatch):
    """A bad value anywhere (a hyperparameter, a fidelity field, the env) is one line on stderr and exit code 2,
    and no run folder is written."""
    monkeypatch.chdir(tmp_path)
    config = _write_config(tmp_path, synth_teacher, synth_dir)
    argv = [str(config) if a == "CONFIG" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- learning agents


@pytest.mark.parametrize("agent, overrides", [
    ("reinforce", ["agent_kwargs.rollouts=2"]),
    ("actor_critic", ["agent_kwargs.rollouts=2"]),
    ("encoder_decoder", ["agent_kwargs.rollouts=2", "env_kwargs.stages=joint"]),
    ("ppo", []),
    ("maskable_ppo", []),
])
def test_learning_agents_run_through_the_cli(agent, overrides, tmp_path, synth_teacher, synth_dir, capsys):
    if agent == "maskable_ppo":
        pytest.importorskip("sb3_contrib")
    config = _write_config(tmp_path, synth_teacher, synth_dir)
    out = tmp_path / agent
    assert main(["search", "--config", str(config), "--agent", agent, "--out", str(out), "--episodes", "4",
                 "--quiet", "--set", "env_kwargs.fidelity=zero", *overrides]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] >= 4 and summary["config"]["agent"] == agent
    assert any(p.name.startswith("agent.ckpt") for p in out.iterdir())
    if agent != "ppo":  # masked agents only make valid students (plain PPO may try masked actions: reward -1)
        assert summary["invalid_episodes"] == 0 and (out / "best_student.pt").is_file()


def test_every_registered_agent_has_a_module_with_run():
    missing = []
    for name, entry in AGENTS.items():
        try:
            module = entry.load()
        except ValueError as e:  # a module not written yet, or sb3-contrib not installed
            missing.append(f"{name} ({e})")
            continue
        assert callable(module.run), name
    if missing:
        pytest.skip(f"agents that cannot be imported: {'; '.join(missing)}")


def test_policy_transfer_starts_from_another_runs_checkpoint(tmp_path, synth_teacher, synth_dir, capsys):
    config = _write_config(tmp_path, synth_teacher, synth_dir, agent="reinforce", agent_kwargs={"rollouts": 2},
                           episodes=2)
    source = tmp_path / "all-classes"
    assert main(["search", "--config", str(config), "--out", str(source), "--quiet",
                 "--set", "env_kwargs.fidelity=zero"]) == 0
    target = tmp_path / "subset"
    assert main(["search", "--config", str(config), "--out", str(target), "--quiet", "--init-from",
                 str(source / "agent.ckpt"), "--set", "env_kwargs.fidelity=zero", "env_kwargs.classes=hbar,blob"]) == 0
    summary = json.loads((target / "summary.json").read_text())
    assert summary["config"]["init_from"] == str((source / "agent.ckpt").resolve())
    assert summary["best_info"]["spec"]["units"][-1]["out_features"] == 2  # the subset's classifier rows


def test_shipped_configs_load():
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert {"lenet5_mnist_random.yaml", "resnet18_cifar10_ppo.yaml",
            "transfer_resnet18_cifar10_to_vehicles.yaml"} <= {p.name for p in configs}
    for path in configs:
        config = load_config(path)
        assert config.agent in AGENTS and config.agent in path.stem or "transfer" in path.stem, path
