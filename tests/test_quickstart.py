"""`ddc quickstart` end to end at smoke scale, and the random-search reference agent."""
import json

import gymnasium as gym
import numpy as np
import pytest

from ddc_env.agents.random_search import random_search
from ddc_env.cli import main
from ddc_env.lab.quickstart import UNIFORM_WIDTHS


def test_quickstart_runs_offline_and_writes_its_run_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    argv = ["quickstart", "--out", str(out), "--episodes", "4", "--fidelity", "smoke", "--teacher-epochs", "1",
            "--agent", "random", "--latency", "flops", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report" / "report.json").read_text())
    methods = [r["method"] for r in report["rows"]]
    assert methods[0].startswith("teacher") and methods[1] == "random (search)"
    assert methods[2:5] == [f"uniform {w:g} (uniform)" for w in UNIFORM_WIDTHS]
    assert methods[5].startswith("l1 global params") and len(methods) == 6
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in report["rows"])  # test accuracy only in the final report
    for name in ("curves.png", "pareto.png", "report.md"):
        assert (out / "report" / name).stat().st_size > 0 and name in printed
    search = json.loads((out / "search" / "summary.json").read_text())
    pruned = json.loads((out / "l1_pruning" / "summary.json").read_text())["results"][0]["record"]
    assert pruned["param_ratio"] <= min(search["best_info"]["param_ratio"], 0.9) + 1e-9


def test_quickstart_replaces_its_own_output_and_refuses_foreign_folders(tmp_path):
    from ddc_env.lab.quickstart import MARKER, _prepare

    out = tmp_path / "qs"
    _prepare(out)
    (out / "search").mkdir()
    (out / "search" / "summary.json").write_text("{}")
    _prepare(out)  # an earlier quickstart: its parts go
    assert (out / MARKER).is_file() and not (out / "search").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        _prepare(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv, message", [
    (["--agent", "sarsa"], "unknown agent 'sarsa'"),
    (["--fidelity", "turbo"], "unknown fidelity 'turbo'"),
    (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
])
def test_quickstart_checks_its_arguments_before_writing_anything(argv, message, tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_random_search_keeps_the_best_episode(synth_teacher, synth_dir):
    import ddc_env  # noqa: F401  (registers the ids)

    env = gym.make("DDC-LeNet5-MNIST", teacher=synth_teacher.path, dataset="synth", data_dir=str(synth_dir),
                   fidelity="zero", latency="flops")
    result = random_search(env, episodes=6, seed=1, progress=False)
    assert len(result.rewards) == 6 and result.best_reward == max(result.rewards)
    assert all(info["status"] == "ok" for info in result.infos)  # masked actions only: never invalid
    again = random_search(env, episodes=6, seed=1, progress=False)
    assert np.allclose(again.rewards, result.rewards) and all(i["cache_hit"] for i in again.infos)
