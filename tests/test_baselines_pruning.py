"""Structured pruning (L1, Taylor, PaKD), the uniform-width baseline, the baseline run folder and `ddc baseline`."""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch
import yaml

from ddc_env.baselines import BASELINES
from ddc_env.baselines.common import Context
from ddc_env.lab import baseline as lab_baseline
from ddc_env.lab.baseline import BaselineConfig, load_baseline_config, run_baseline
from ddc_env.lab.runs import locked
from ddc_env.baselines.structured_pruning import allocate_global, allocate_per_layer, l1_ranking, taylor_importance
from ddc_env.arch import build, channel_counts, inherit, with_channels
from ddc_env.cli import main
from ddc_env.metrics import count_params
from ddc_env.models import get_model_spec
from ddc_env.store import ResultsStore


def _env_kwargs(synth_teacher, synth_dir, **overrides) -> dict:
    return {"model": "lenet5", "teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
            "fidelity": "smoke", "latency": "flops", "device": "cpu", "channel_round": 2, "min_channels": 2,
            **overrides}


def _run(name: str, tmp_path: Path, synth_teacher, synth_dir, **kwargs) -> dict:
    config = BaselineConfig(baseline=name, env_id="DDC-LeNet5-MNIST", env_kwargs=_env_kwargs(synth_teacher, synth_dir),
                            kwargs=kwargs)
    return run_baseline(config, tmp_path / name, progress=False)


def _load_model(run_dir: Path, result: dict) -> torch.nn.Module:
    from ddc_env.arch import NetSpec

    net = build(NetSpec.from_json((run_dir / result["model"]["spec"]).read_text()))
    net.load_state_dict(torch.load(run_dir / result["model"]["weights"], weights_only=True))
    return net


@pytest.mark.parametrize("name", ["l1_pruning", "taylor_pruning", "pakd"])
def test_pruning_removes_filters_down_to_the_target(name, tmp_path, synth_teacher, synth_dir):
    summary = _run(name, tmp_path, synth_teacher, synth_dir, ratio=0.3, steps=2)
    (result,) = summary["results"]
    record = result["record"]
    assert record["param_ratio"] <= 0.3 and record["param_ratio"] > 0.15  # reached, not overshot by far
    net = _load_model(tmp_path / name, result)
    assert count_params(net) == record["params"] < synth_teacher.spec.params  # physically smaller, no masks
    assert 0.0 <= record["val_acc"] <= 1.0 and record["teacher_val_acc"] > 0.5
    # every step and the final model are in the run's results store under the baseline's method
    rows = ResultsStore(tmp_path / name / "results.sqlite").query(method=f"baseline:{name}")
    assert [r["record"]["label"] for r in rows] == [*(f"{result['ranking']} step {s}" for s in (1, 2)),
                                                    result["label"]]
    assert json.loads((tmp_path / name / "summary.json").read_text())["kind"] == "baseline"


def test_pakd_shrinks_every_layer_by_the_same_fraction(tmp_path, synth_teacher, synth_dir):
    spec = get_model_spec("vgg11", num_classes=10)
    floors = {k: 8 for k in channel_counts(spec)}
    counts = allocate_per_layer(spec, floors, 0.25 * spec.params, "params")
    fractions = [counts[k] / c for k, c in channel_counts(spec).items()]
    assert max(fractions) - min(fractions) < 0.02
    assert with_channels(spec, counts).params <= 0.25 * spec.params


def test_global_allocation_removes_the_lowest_scores_first():
    spec = get_model_spec("resnet18", num_classes=10, stem="cifar")
    counts = channel_counts(spec)
    # one space scores far below the rest: it alone is pruned to its floor before anything else goes
    importance = {k: torch.ones(c) for k, c in counts.items()}
    importance["layer4.0/mid"] = torch.full((counts["layer4.0/mid"],), 1e-3)
    floors = {k: 8 for k in counts}
    goal = spec.params - 1
    pruned = allocate_global(spec, importance, floors, goal, "params")
    assert pruned["layer4.0/mid"] < counts["layer4.0/mid"]
    assert all(pruned[k] == counts[k] for k in counts if k != "layer4.0/mid")
    # and a deep cut reaches the goal on a residual network, respecting the floors
    pruned = allocate_global(spec, l1_ranking(build(spec), spec), floors, 0.1 * spec.params, "params")
    assert with_channels(spec, pruned).params <= 0.1 * spec.params and min(pruned.values()) >= 8


def test_inherit_keeps_the_channels_a_criterion_ranks_highest():
    spec = get_model_spec("resnet18", num_classes=10, stem="cifar")
    teacher = build(spec).eval()
    smaller = with_channels(spec, {"layer1.0/mid": 16})
    scores = torch.zeros(64)
    keep = torch.tensor([3, 9, 10, 20, 31, 32, 40, 41, 42, 50, 51, 52, 60, 61, 62, 63])
    scores[keep] = 1.0
    student = inherit(teacher, spec, smaller, importance={"layer1.0/mid": scores})
    t, s = teacher.unit("layer1.0"), student.unit("layer1.0")
    assert torch.equal(s.conv1.weight, t.conv1.weight[keep])
    assert torch.equal(s.conv2.weight, t.conv2.weight[:, keep])


def test_taylor_ranks_a_channel_nothing_reads_last_whatever_its_norm(synth_teacher, synth_dir, tmp_path):
    env = gym.make("DDC-LeNet5-MNIST", **_env_kwargs(synth_teacher, synth_dir)).unwrapped
    ctx = Context(env.task, env.scorer.inner, ResultsStore(tmp_path / "r.sqlite"), tmp_path / "models",
                  "baseline:test", progress=False)
    spec = env.student_spec({})
    net = ctx.distiller.init_student(spec)
    with torch.no_grad():  # conv2 channel 5: the largest filter, but fc1 ignores it
        conv2, fc1 = net.unit("conv2").conv, net.unit("fc1").fc
        conv2.weight[5] *= 100
        per_channel = fc1.weight.shape[1] // conv2.weight.shape[0]
        fc1.weight[:, 5 * per_channel:6 * per_channel] = 0
    taylor = taylor_importance(net, spec, ctx, n_images=128)["conv2"]
    l1 = l1_ranking(net, spec)["conv2"]
    assert taylor.argmin().item() == 5 and taylor[5].item() == 0.0
    assert l1.argmax().item() == 5
    env.close()


def test_uniform_baseline_matches_the_envs_uniform_students(tmp_path, synth_teacher, synth_dir):
    summary = _run("uniform", tmp_path, synth_teacher, synth_dir, widths=[0.5])
    (result,) = summary["results"]
    env = gym.make("DDC-LeNet5-MNIST", **_env_kwargs(synth_teacher, synth_dir)).unwrapped
    from ddc_env.arch import uniform_choices

    record = env.evaluate_choices(uniform_choices(env.teacher_spec, 0.5))
    # same spec, same seed, same recipe: the baseline's student is exactly the env's
    assert result["record"]["spec_hash"] == record["spec_hash"]
    assert result["record"]["val_acc"] == pytest.approx(record["val_acc"])
    env.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"ratio": 1.5}, "ratio must be a finite number > 0 and < 1, got 1.5"),
    ({"ratio": float("nan")}, "ratio must be a finite number > 0 and < 1, got nan"),
    ({"steps": 0}, "steps must be a positive integer, got 0"),
    ({"steps": 2.0}, "steps must be a positive integer, got 2.0"),
    ({"epochs": "1"}, "epochs must be an integer >= 0 or None, got '1'"),
    ({"target": "size"}, "unknown target 'size'; allowed: ['params', 'flops']"),
    ({"ranking": "l1"}, "unknown argument(s) ['ranking']"),  # fixed by the registry entry
    ({"bogus": 1}, "unknown argument(s) ['bogus']"),
])
def test_bad_pruning_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        BASELINES["taylor_pruning"].arguments(kwargs)


def _write_config(tmp_path: Path, synth_teacher, synth_dir) -> Path:
    path = tmp_path / "baselines.yaml"
    path.write_text(yaml.safe_dump({"env_id": "DDC-LeNet5-MNIST", "env_kwargs": _env_kwargs(synth_teacher, synth_dir),
                                    "seed": 3, "baselines": {"uniform": {"widths": [0.25, 0.5]}}}))
    return path


def test_cli_baseline_runs_a_config_section_with_overrides(tmp_path, synth_teacher, synth_dir, capsys):
    path = _write_config(tmp_path, synth_teacher, synth_dir)
    assert main(["baseline", "uniform", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet",
                 "--set", "baselines.uniform.widths=[0.75]"]) == 0
    out = capsys.readouterr().out
    assert "uniform 0.75: val_acc" in out and "uniform 0.25" not in out
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["kwargs"] == {"widths": [0.75], "epochs": None} and saved["seed"] == 3
    assert load_baseline_config(path, "uniform").kwargs == {"widths": [0.25, 0.5]}


@pytest.mark.parametrize("argv, message", [
    (["baseline", "nope"], "invalid choice: 'nope'"),
    (["baseline", "uniform", "--set", "baselines.uniform.widths=[2]"],
     "each of widths must be a finite number > 0 and <= 1, got 2"),
    (["baseline", "uniform", "--set", "baselines.uniform.epochs=1.5"], "epochs must be an integer >= 0 or None"),
    (["baseline", "l1_pruning", "--set", "baselines.l1_pruning.ratio=.nan"], "ratio must be a finite number"),
    (["baseline", "uniform", "--set", "env_kwargs.fidelity=bogus"], "unknown fidelity 'bogus'"),
    (["baseline", "uniform", "--set", "env_kwargs.fidelity={name: smoke, lr: .nan}"],
     "fidelity lr must be a finite number > 0, got nan"),
    (["baseline", "uniform", "--set", "env_kwargs.device=gpu"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["baseline", "uniform", "--set", "seed=-1"], "seed must be an integer >= 0"),
    (["baseline", "uniform", "--set", "bogus=1"], "unknown baselines config key 'bogus' in override"),
])
def test_cli_baseline_errors_are_clear(argv, message, tmp_path, synth_teacher, synth_dir, capsys):
    """Every bad value is one line on stderr with exit code 2, before the run folder exists."""
    path = _write_config(tmp_path, synth_teacher, synth_dir)
    out = ["--out", str(tmp_path / "run")]
    argv = [*argv[:2], "--config", str(path), *out, *argv[2:]] if argv[1] != "nope" else [*argv, "--config", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_second_baseline_on_a_run_folder_in_use_fails_at_once(tmp_path, synth_teacher, synth_dir, capsys,
                                                                 monkeypatch):
    """While one process writes a baseline run folder, a second ``ddc baseline --out`` on it fails before loading
    the teacher and data (it used to load them first)."""
    path = _write_config(tmp_path, synth_teacher, synth_dir)
    out = tmp_path / "run"
    loaded = []
    monkeypatch.setattr(lab_baseline, "load_task", lambda *args, **kwargs: loaded.append(args))
    with locked(out):  # what a running baseline holds
        assert main(["baseline", "uniform", "--config", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is in use by another process" in err and len(err.strip().splitlines()) == 1
    assert loaded == [] and [p.name for p in out.iterdir()] == [".lock"]


def test_shipped_baseline_configs_load_every_baseline():
    repo = Path(__file__).resolve().parents[1]
    paths = sorted((repo / "configs" / "baselines").glob("*.yaml"))
    assert [p.name for p in paths] == ["lenet5_mnist.yaml", "resnet18_cifar10.yaml"]
    for path in paths:
        sections = yaml.safe_load(path.read_text())["baselines"]
        assert set(sections) == set(BASELINES), path
        for name in BASELINES:  # every section's arguments are valid for its baseline
            assert load_baseline_config(path, name).kwargs == (sections[name] or {})
