"""`ddc quickstart` end to end at smoke scale, and the random-search reference agent."""
import json

import gymnasium as gym
import numpy as np

from agents.random_search import random_search
from ddc_env.cli import main
from ddc_env.quickstart import UNIFORM_WIDTHS


def test_quickstart_runs_offline_and_writes_its_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    code = main(["quickstart", "--out", str(out), "--episodes", "3", "--fidelity", "smoke", "--teacher-epochs", "1",
                 "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| teacher |" in printed and "random search, best of 3" in printed
    summary = json.loads((out / "summary.json").read_text())
    methods = [r["method"] for r in summary["rows"]]
    assert methods == ["teacher", "random search, best of 3", *(f"uniform width {w:g}" for w in UNIFORM_WIDTHS)]
    assert all(0.0 <= r["val_acc"] <= 1.0 for r in summary["rows"])
    assert summary["rows"][2]["param_ratio"] < 0.2  # width 0.25 really shrinks LeNet-5
    assert (out / "results.sqlite").exists()


def test_random_search_keeps_the_best_episode(synth_teacher, synth_dir):
    import ddc_env  # noqa: F401  (registers the ids)

    env = gym.make("DDC-LeNet5-MNIST", teacher=synth_teacher.path, dataset="synth", data_dir=str(synth_dir),
                   fidelity="zero", latency="flops")
    result = random_search(env, episodes=6, seed=1, progress=False)
    assert len(result.rewards) == 6 and result.best_reward == max(result.rewards)
    assert all(info["status"] == "ok" for info in result.infos)  # masked actions only: never invalid
    again = random_search(env, episodes=6, seed=1, progress=False)
    assert np.allclose(again.rewards, result.rewards) and all(i["cache_hit"] for i in again.infos)
