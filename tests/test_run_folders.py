"""Run folders. Failed commands leave no folder that neither a new run nor ``--resume`` could use: a bad
``--init-from``, a quickstart that fails on its first run; what a failed search keeps (anything to resume from) and
what it removes. Every agent writes one TensorBoard folder with one scheme of tags."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddc_env.cli import main
from ddc_env.lab.runs import removed_on_error


@pytest.fixture()
def config(tmp_path, synth_teacher, synth_dir) -> Path:
    """A reinforce search on the synthetic LeNet-5 teacher, 2 rollouts per update, zero fidelity."""
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({
        "env_id": "DDC-LeNet5-MNIST",
        "env_kwargs": {"teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
                       "fidelity": "zero", "latency": "flops", "device": "cpu"},
        "agent": "reinforce", "agent_kwargs": {"rollouts": 2}, "episodes": 2}))
    return path


def test_an_init_from_another_agents_checkpoint_leaves_no_run_folder(config, tmp_path, capsys):
    source = tmp_path / "reinforce-run"
    assert main(["search", "--config", str(config), "--out", str(source), "--quiet"]) == 0
    target = tmp_path / "runs" / "ppo-run"
    argv = ["search", "--config", str(config), "--agent", "ppo", "--out", str(target), "--quiet"]
    capsys.readouterr()
    assert main([*argv, "--init-from", str(source / "agent.ckpt")]) == 2  # a reinforce checkpoint, not a PPO one
    err = capsys.readouterr().err
    assert "is no stable-baselines3 checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nor the parent made for it
    assert main(argv) == 0  # the same folder takes a new run
    assert json.loads((target / "summary.json").read_text())["episodes"] >= 2


def test_a_missing_init_from_fails_before_any_folder(config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--config", str(config), "--out", str(out), "--quiet", "--init-from",
                 str(tmp_path / "nowhere" / "agent.ckpt")]) == 2
    assert "no such file" in capsys.readouterr().err and not out.exists()


def test_a_quickstart_that_fails_leaves_nothing(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.write_text("a file where DDC_HOME should be: the teacher cannot be saved")
    monkeypatch.setenv("DDC_HOME", str(home))
    out = tmp_path / "runs" / "quickstart"
    assert main(["quickstart", "--out", str(out), "--episodes", "2", "--fidelity", "smoke", "--teacher-epochs", "1",
                 "--agent", "random", "--latency", "flops", "--quiet"]) == 2
    assert "ddc: error" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_removed_on_error_keeps_what_was_there_and_what_is_worth_keeping(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("mine")
    with pytest.raises(RuntimeError), removed_on_error(existing):
        (existing / "new").mkdir()
        (existing / "new.txt").write_text("x")
        raise RuntimeError
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]

    fresh = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), removed_on_error(fresh, keep=lambda: True):
        fresh.mkdir(parents=True)
        raise RuntimeError
    assert fresh.is_dir()  # worth keeping
    with pytest.raises(KeyboardInterrupt), removed_on_error(tmp_path / "c"):
        (tmp_path / "c").mkdir()
        raise KeyboardInterrupt
    assert (tmp_path / "c").is_dir()  # interrupted: kept to resume
    with removed_on_error(tmp_path / "d"):
        (tmp_path / "d").mkdir()
    assert (tmp_path / "d").is_dir()  # success


def test_a_custom_agent_writes_one_tensorboard_folder_in_the_sb3_agents_scheme(config, tmp_path, capsys):
    """Every search logs through the run's SearchLog: one event folder, ``episode/*`` and ``search/*``, the agent's
    own scalars under ``agent/*`` (tests/test_agents_sb3.py checks the same of the SB3 agents)."""
    out = tmp_path / "reinforce"
    assert main(["search", "--config", str(config), "--episodes", "4", "--out", str(out), "--quiet"]) == 0
    board = out / "tensorboard"
    assert [p for p in board.iterdir() if p.is_dir()] == [] and len(list(board.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(board))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {tag.split("/")[0] for tag in tags} == {"episode", "search", "agent"}, tags
    assert {"episode/reward", "episode/val_acc", "episode/param_ratio", "search/best_reward",
            "search/cache_hit_rate", "agent/train/loss"} <= tags
