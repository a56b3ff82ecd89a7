"""KD into DDC's hand-designed small VGG (kd_student) and the teacher-assistant chain (kd_pyramid)."""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from torch import nn

from ddc_env.baselines import get_baseline
from ddc_env.lab.baseline import BaselineConfig, run_baseline
from ddc_env.arch import Conv, GlobalPool, Linear, NetSpec, Pool, apply_decisions, build, uniform_choices
from ddc_env.data import normalize
from ddc_env.models import MODELS, lenet5
from ddc_env.models import ddc_small_vgg
from ddc_env.store import ResultsStore
from ddc_env.train import predict

WIDTH = 0.0625  # 18k params: below the synthetic LeNet-5 teacher's 61k


@pytest.fixture(scope="module")
def env_kwargs(synth_teacher, synth_dir) -> dict:
    return dict(model="lenet5", teacher=str(synth_teacher.path), dataset="synth", data_dir=str(synth_dir),
                fidelity="smoke", latency="flops", device="cpu")


def _run(name: str, env_kwargs: dict, out: Path, **kwargs) -> dict:
    config = BaselineConfig(baseline=name, env_id="DDC-LeNet5-MNIST", env_kwargs=env_kwargs, kwargs=kwargs)
    return run_baseline(config, out, progress=False)


@pytest.fixture(scope="module")
def kd_run(env_kwargs, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("kd") / "run"
    return _run("kd_student", env_kwargs, out, width=WIDTH), out


@pytest.fixture(scope="module")
def pyramid_run(env_kwargs, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("pyramid") / "run"
    return _run("kd_pyramid", env_kwargs, out, width=WIDTH), out


def _load(run_dir: Path, result: dict) -> tuple[NetSpec, dict[str, torch.Tensor]]:
    spec = NetSpec.from_json((run_dir / result["model"]["spec"]).read_text())
    return spec, torch.load(run_dir / result["model"]["weights"])


def test_small_vgg_has_ddcs_layer_sequence() -> None:
    spec = ddc_small_vgg(num_classes=10, in_channels=3, input_size=(32, 32))
    pools = [i for i, u in enumerate(spec.units) if isinstance(u, Pool)]
    assert [u.out_channels for u in spec.units if isinstance(u, Conv)] == [64, 128, 256, 256, 512, 512]
    assert pools == [1, 3, 6, 8, 10]  # 64-M-128-M-256-256-M-512-M-512-M
    assert all(u.kernel == 3 and u.bn and u.relu for u in spec.units if isinstance(u, Conv))
    assert isinstance(spec.units[-2], GlobalPool) and spec.units[-1] == Linear("classifier", 10)
    net = build(spec)
    assert spec.params == sum(p.numel() for p in net.parameters())
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    # 28x28: 28-14-7-3-1, the fifth pool would empty the maps
    assert sum(isinstance(u, Pool) for u in ddc_small_vgg(4, 1, (28, 28)).units) == 4
    assert "ddc_small_vgg" not in MODELS  # a student, never offered as a teacher


def test_small_vgg_width_scales_every_conv() -> None:
    def channels(width: float) -> list[int]:
        return [u.out_channels for u in ddc_small_vgg(width=width).units if isinstance(u, Conv)]

    assert channels(0.5) == [32, 64, 128, 128, 256, 256]
    assert channels(0.3) == [16, 40, 80, 80, 152, 152]  # multiples of 8
    assert channels(0.01) == [8] * 6  # at least 8
    assert channels(2.0) == [128, 256, 512, 512, 1024, 1024]
    for bad in (0, -1.0, True):
        with pytest.raises(ValueError, match="width"):
            ddc_small_vgg(width=bad)


def test_kd_student_distils_a_random_init_small_vgg(kd_run, env_kwargs, synth_teacher) -> None:
    summary, run_dir = kd_run
    (result,) = summary["results"]
    spec, weights = _load(run_dir, result)
    assert spec == ddc_small_vgg(num_classes=4, in_channels=1, input_size=(28, 28), width=WIDTH)
    record = result["record"]
    assert record["params"] == spec.params == 18284 < record["teacher_params"] == lenet5(4).params
    assert record["distilled_from"] == "teacher" and result["assistants"] == []
    # the weights are those of the seeded random init KD-trained on the teacher's cached logits
    distiller = gym.make("DDC-LeNet5-MNIST", **env_kwargs, store=None).unwrapped.scorer.inner.distiller
    torch.manual_seed(0)
    net = distiller.precision.prepare(build(spec))
    distiller.distill(net)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0, msg=key)
    net.load_state_dict(weights)
    assert record["val_acc"] == pytest.approx(distiller.accuracy(net))


def _view_logits(distiller, net: nn.Module) -> torch.Tensor:
    """The net's logits on the distiller's cached views, computed with public helpers only."""
    images, _ = distiller.teacher_views()
    mean, std = distiller.data.mean, distiller.data.std
    return torch.stack([predict(net, [normalize(view, mean, std)], device=distiller.device,
                                precision=distiller.precision) for view in images])


def test_pyramid_distils_each_model_from_the_previous(pyramid_run, kd_run, env_kwargs) -> None:
    summary, run_dir = pyramid_run
    (result,) = summary["results"]  # one final model; the assistants are intermediate records
    spec, weights = _load(run_dir, result)
    widths = result["assistants"]
    params = [ddc_small_vgg(4, 1, (28, 28), width=w).params for w in widths]
    assert len(widths) == 2 and lenet5(4).params > params[0] > params[1] > spec.params

    with ResultsStore(run_dir / "results.sqlite") as store:
        records = [row["record"] for row in store.query(method="baseline:kd_pyramid")]
    assert [r["role"] for r in records] == ["assistant", "assistant", "student"]
    assert [r["distilled_from"] for r in records] == ["teacher", records[0]["label"], records[1]["label"]]
    assert [r["params"] for r in records] == [*params, spec.params]

    # rebuild the chain: each model from the same seeded init, KD-trained on the previous model's logits
    distiller = gym.make("DDC-LeNet5-MNIST", **env_kwargs, store=None).unwrapped.scorer.inner.distiller
    logits = None
    for w, record in zip(widths, records):
        torch.manual_seed(0)
        assistant = distiller.precision.prepare(build(ddc_small_vgg(4, 1, (28, 28), width=w)))
        distiller.distill(assistant, teacher_logits=logits)
        assert distiller.accuracy(assistant) == pytest.approx(record["val_acc"])
        logits = _view_logits(distiller, assistant)
    torch.manual_seed(0)
    student = distiller.precision.prepare(build(spec))
    distiller.distill(student, teacher_logits=logits)
    for key, value in student.state_dict().items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0, msg=key)
    # kd_student's student of the same spec and init learnt from the teacher instead: other weights
    _, direct = _load(kd_run[1], kd_run[0]["results"][0])
    assert not torch.equal(direct["units.features_0.conv.weight"], weights["units.features_0.conv.weight"])


def test_explicit_assistants_and_zoo_students(env_kwargs, tmp_path) -> None:
    summary = _run("kd_pyramid", env_kwargs, tmp_path / "pyramid", student="lenet5", width=0.5,
                   assistants=[0.75], epochs=0)
    (result,) = summary["results"]
    expected = apply_decisions(lenet5(4), uniform_choices(lenet5(4), 0.5), channel_round=2, min_channels=2)
    assert result["record"]["params"] == expected.params < lenet5(4).params
    assert result["assistants"] == [0.75]
    assert json.loads((tmp_path / "pyramid" / "summary.json").read_text())["results"][0]["label"] == "lenet5 x0.5"


@pytest.mark.parametrize("name, kwargs, match", [
    ("kd_student", {"student": "resnet99"}, r"unknown student 'resnet99'; allowed: \['ddc_small_vgg'"),
    ("kd_student", {"width": 0}, "width must be"),
    ("kd_student", {"student": "vgg11", "width": 1.5}, r"width must be a finite number > 0 and <= 1, got 1.5"),
    ("kd_student", {"epochs": -1}, "epochs"),
    ("kd_student", {"lr": 0.0}, "lr must be"),
    ("kd_student", {"lr": float("nan")}, "lr must be a finite number > 0 or None, got nan"),
    ("kd_student", {"chain": "yes"}, "chain must be true or false"),
    ("kd_student", {"assistants": [0.5]}, "need chain=true"),
    ("kd_pyramid", {"chain": False}, "unknown argument"),
    ("kd_pyramid", {"width": 0.25, "assistants": [0.5, 0.75]}, "decreasing"),
    ("kd_pyramid", {"width": 0.25, "assistants": [0.25]}, "above the student"),
    ("kd_pyramid", {"assistants": "0.5"}, r"assistants \(widths\) must be a list of numbers"),
    ("kd_pyramid", {"width": 0.25, "assistants": [0.5, "x"]}, r"each of assistants \(widths\) must be a finite"),
])
def test_bad_kwargs_raise(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_baseline(name).arguments(kwargs)


def test_default_chain_needs_a_teacher_larger_than_the_student(env_kwargs, tmp_path) -> None:
    with pytest.raises(ValueError, match="not larger than the student"):
        _run("kd_pyramid", env_kwargs, tmp_path / "run")  # the full small VGG (4.5M) vs LeNet-5 (61k)
