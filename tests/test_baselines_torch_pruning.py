"""The torch_pruning baseline: torch-pruning (DepGraph) prunes modules built from the IR, the pruned module maps back
to a NetSpec that computes exactly what it computes, the ratio search meets its target, and the baseline runs end to
end through ``ddc baseline`` into the results store."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from ddc_env.arch import NetSpec, build, channel_counts, round_channels, with_channels
from ddc_env.baselines import BASELINES
from ddc_env.arch import channel_dims, spec_of_pruned
from ddc_env.baselines.library_pruning import TOLERANCE, SpacePruner, make_importance
from ddc_env.cli import main
from ddc_env.metrics import count_params
from ddc_env.models import get_model_spec
from ddc_env.models import ddc_small_vgg
from ddc_env.store import ResultsStore


def _two_stage_resnet() -> NetSpec:
    """ResNet-18 without its last two stages, on 16x16 inputs: a stem stream, a projection stage, identity blocks."""
    spec = get_model_spec("resnet18", num_classes=10)
    units = tuple(u for u in spec.units if not u.name.startswith(("layer3", "layer4")))
    return dataclasses.replace(spec, units=units, input_size=(16, 16))


SPECS = {"resnet": _two_stage_resnet, "vgg": lambda: ddc_small_vgg(10, input_size=(16, 16), width=0.25),
         "lenet": lambda: get_model_spec("lenet5")}


def _trained_looking(spec: NetSpec) -> torch.nn.Module:
    """A module of ``spec`` with random BatchNorm affine parameters and statistics, so no layer is an identity."""
    torch.manual_seed(0)
    net = build(spec)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for tensor in (m.weight, m.bias, m.running_mean):
                tensor.data.uniform_(-1, 1)
            m.running_var.data.uniform_(0.5, 2)
    return net.eval()


def _pruner(net: torch.nn.Module, spec: NetSpec, importance: str = "group_norm", round_to: int = 8) -> SpacePruner:
    return SpacePruner(net, spec, make_importance(importance), teacher_counts=channel_counts(spec), round_to=round_to,
                       min_channels=4)


@pytest.mark.parametrize("name", list(SPECS))
def test_the_pruned_module_maps_to_a_spec_that_computes_the_same(name):
    spec = SPECS[name]()
    net = _trained_looking(spec)
    pruner = _pruner(net, spec, round_to=1)  # one-channel steps: the target is met within the tolerance
    goal = 0.3 * spec.params
    _, plan = pruner.reach(goal, lambda counts: with_channels(spec, counts).params, float, pruner.global_limit)
    rebuilt, mapped = pruner.apply(plan)  # net is now torch-pruning's pruned module
    # the params target is met, within the search's tolerance below it
    assert goal * (1 - TOLERANCE) <= mapped.params <= goal
    assert mapped.params == count_params(net) == count_params(rebuilt)
    # the mapped spec's module has the pruned module's exact tensors, and computes what it computes
    fresh = build(mapped).eval()
    fresh.load_state_dict(net.state_dict(), strict=True)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    x = torch.randn(8, spec.in_channels, *spec.input_size)
    with torch.no_grad():
        expected = net(x)
        assert (fresh(x) - expected).abs().max().item() <= 1e-6
        assert (rebuilt.eval()(x) - expected).abs().max().item() <= 1e-6
    # no channel space fell below its floor, and the classifier kept its classes
    assert all(c >= min(4, channel_counts(spec)[s]) for s, c in channel_counts(mapped).items())
    assert mapped.num_classes == spec.num_classes


def test_residual_streams_stay_one_width():
    spec = _two_stage_resnet()
    net = _trained_looking(spec)
    pruner = _pruner(net, spec, "magnitude")
    _, plan = pruner.reach(0.4 * spec.params, lambda counts: with_channels(spec, counts).params, float,
                           pruner.global_limit)
    _, mapped = pruner.apply(plan)
    counts = channel_counts(mapped)
    assert counts["conv1"] < 64 and counts["layer2.0"] < 128  # both streams were pruned
    assert all(c % 8 == 0 for c in counts.values())  # rounded to round_to
    # every tensor of a stream kept the same channels: stem, both identity blocks' outputs and inputs
    stem, first, second = (net.unit(n) for n in ("conv1", "layer1.0", "layer1.1"))
    widths = {stem.conv.weight.shape[0], first.conv1.weight.shape[1], first.conv2.weight.shape[0],
              second.conv1.weight.shape[1], second.conv2.weight.shape[0], net.unit("layer2.0").conv1.weight.shape[1]}
    assert widths == {counts["conv1"]}
    projection, after = net.unit("layer2.0"), net.unit("layer2.1")
    assert {projection.conv2.weight.shape[0], projection.downsample[0].weight.shape[0],
            after.conv2.weight.shape[0], after.conv1.weight.shape[1]} == {counts["layer2.0"]}


def test_the_mapping_reads_dims_generically_and_refuses_what_no_spec_is():
    lenet = get_model_spec("lenet5")
    dims = channel_dims(lenet)
    assert dims["units.fc1.fc.weight", 1] == ("conv2", 25)  # a Linear reading 5x5 flattened maps
    assert dims["units.conv2.bn.running_var", 0] == ("conv2", 1)
    assert not any(key.startswith("units.fc3.fc.") and dim == 0 for key, dim in dims)  # the classifier: no space
    spec = _two_stage_resnet()
    state = build(spec).state_dict()
    narrower = {**state, "units.layer1_0.conv2.weight": state["units.layer1_0.conv2.weight"][:60]}
    with pytest.raises(ValueError, match="channel space 'conv1' is 64 channels wide in one tensor but 60"):
        spec_of_pruned(spec, narrower)
    assert spec_of_pruned(spec, state) == spec


def test_per_layer_and_sensitivity_ratios_prune_spaces_by_their_own_fraction():
    spec = SPECS["vgg"]()
    net = _trained_looking(spec)
    pruner = _pruner(net, spec, "magnitude", round_to=1)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    plan = pruner.plan({"features.0": 0.5, "features.4": 0.25})
    counts = channel_counts(spec)
    assert plan.counts == {**counts, "features.0": counts["features.0"] // 2,
                           "features.4": counts["features.4"] * 3 // 4}
    assert {k: v.shape for k, v in net.state_dict().items()} == shapes  # planning leaves the module as it was
    # a ratio of 1 stops at the floor instead of emptying the space (which torch-pruning would skip)
    assert pruner.plan({"features.2": 1.0}).counts["features.2"] == 4


def _env_kwargs(synth_teacher, synth_dir) -> dict:
    return {"model": "lenet5", "teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
            "fidelity": "smoke", "latency": "flops", "device": "cpu", "channel_round": 2, "min_channels": 2}


def _config(tmp_path: Path, synth_teacher, synth_dir, **kwargs) -> Path:
    path = tmp_path / "baselines.yaml"
    path.write_text(yaml.safe_dump({"env_id": "DDC-LeNet5-MNIST", "env_kwargs": _env_kwargs(synth_teacher, synth_dir),
                                    "baselines": {"torch_pruning": kwargs}}))
    return path


def test_the_baseline_runs_through_ddc_baseline_into_the_results_store(tmp_path, synth_teacher, synth_dir, capsys):
    path = _config(tmp_path, synth_teacher, synth_dir, ratio=0.3, steps=2)
    run = tmp_path / "run"
    assert main(["baseline", "torch_pruning", "--config", str(path), "--out", str(run), "--quiet"]) == 0
    assert "magnitude global params 0.3: val_acc" in capsys.readouterr().out
    (result,) = json.loads((run / "summary.json").read_text())["results"]
    record = result["record"]
    assert 0.3 * (1 - 2 * TOLERANCE) <= record["param_ratio"] <= 0.3  # two-channel steps on this task
    assert result["reached_ratio"] == record["param_ratio"]
    assert 0.0 <= record["val_acc"] <= 1.0 and record["teacher_val_acc"] > 0.5
    spec = NetSpec.from_json((run / result["model"]["spec"]).read_text())
    net = build(spec)
    net.load_state_dict(torch.load(run / result["model"]["weights"], weights_only=True))
    assert count_params(net) == record["params"] == spec.params
    rows = ResultsStore(run / "results.sqlite").query(method="baseline:torch_pruning")
    assert [r["record"]["label"] for r in rows] == ["magnitude step 1", "magnitude step 2", result["label"]]


def test_sensitivity_prunes_no_space_past_its_safe_ratio(tmp_path, synth_teacher, synth_dir):
    path = _config(tmp_path, synth_teacher, synth_dir, importance="taylor", allocation="sensitivity", ratio=0.2,
                   steps=1, sensitivity_ratios=[0.25, 0.5], max_drop=0.01, ranking_images=128)
    run = tmp_path / "run"
    assert main(["baseline", "torch_pruning", "--config", str(path), "--out", str(run), "--quiet"]) == 0
    (result,) = json.loads((run / "summary.json").read_text())["results"]
    teacher = channel_counts(synth_teacher.spec)
    assert set(result["safe_ratios"]) == set(result["sensitivity"]) == set(teacher)
    for space, safe in result["safe_ratios"].items():
        assert safe == 0.0 or f"{safe:g}" in result["sensitivity"][space]  # a safe ratio is one that was tried
        assert result["channels"][space] >= round_channels(teacher[space], 1 - safe, 2, 2)
    assert result["safe_ratios"]["conv2"] == 0.0  # on this teacher conv2 is sensitive: left as it is
    # so the goal is out of reach: every space stops exactly at its safe ratio (Li et al.'s allocation)
    assert result["reached_ratio"] > 0.2
    safe = result["safe_ratios"]
    assert result["channels"] == {s: round_channels(c, 1 - safe[s], 2, 2) for s, c in teacher.items()}


@pytest.mark.parametrize("kwargs, message", [
    ({"importance": "l2"}, "unknown importance 'l2'; allowed: ['magnitude', 'taylor', 'group_norm']"),
    ({"allocation": "uniform"}, "unknown allocation 'uniform'"),
    ({"target": "size"}, "unknown target 'size'; allowed: ['params', 'flops', 'latency']"),
    ({"ratio": 0.0}, "ratio must be a finite number > 0 and <= 1, got 0.0"),
    ({"ratio": 1.5}, "ratio must be a finite number > 0 and <= 1, got 1.5"),
    ({"ratio": float("nan")}, "ratio must be a finite number > 0 and <= 1, got nan"),
    ({"steps": -1}, "steps must be a positive integer, got -1"),
    ({"round_to": 0}, "round_to must be a positive integer or None, got 0"),
    ({"sensitivity_ratios": [0.5, 1.0]}, "each of sensitivity_ratios must be a finite number > 0 and < 1, got 1.0"),
    ({"max_drop": -0.1}, "max_drop must be a finite number >= 0 and <= 1, got -0.1"),
])
def test_bad_arguments_fail_in_one_line_before_any_work(kwargs, message, tmp_path, synth_teacher, synth_dir, capsys):
    with pytest.raises(ValueError) as info:
        BASELINES["torch_pruning"].arguments(kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    path = _config(tmp_path, synth_teacher, synth_dir, **kwargs)
    assert main(["baseline", "torch_pruning", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
