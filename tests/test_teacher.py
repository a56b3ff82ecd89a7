"""Tests for teacher training, teacher checkpoints and atomic writes (synthetic data, no network)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from ddc_env.agents.random_search import random_episode
from ddc_env.arch import Block, Conv, GlobalPool, Linear, NetSpec, build
from ddc_env.cli import main
from ddc_env.data import DataConfig, load_data
from ddc_env.models import (CheckpointError, TeacherCheckpoint, TeacherRecipe, find_teacher, lenet5, list_teachers,
                            load_teacher, save_teacher, sidecar_path, teacher_filename, train_teacher)
from ddc_env.models import teacher as teacher_module
from ddc_env.models.teacher import estimate_training_seconds, min_training_seconds
from ddc_env.paths import atomic_write_bytes, atomic_writer, ddc_home, teachers_dir
from ddc_env.train import OptimConfig
from synthetic import write_synthetic_npz

FAST = TeacherRecipe(epochs=2, batch_size=32, optim=OptimConfig(lr=0.05))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary DDC_HOME, with the synthetic dataset in ``<root>/data``."""
    root = tmp_path_factory.mktemp("ddc")
    write_synthetic_npz(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DDC_HOME", str(root / "home"))
        yield root


@pytest.fixture(scope="module")
def data(home: Path) -> DataConfig:
    return DataConfig("synth", data_dir=str(home / "data"))


@pytest.fixture(scope="module")
def trained(data: DataConfig) -> TeacherCheckpoint:
    return train_teacher("lenet5", data, FAST, device="cpu", progress=False)


def _copy(ckpt: TeacherCheckpoint, directory: Path, sidecar: bool = True) -> Path:
    pt = directory / ckpt.path.name
    shutil.copy(ckpt.path, pt)
    if sidecar:
        shutil.copy(sidecar_path(ckpt.path), sidecar_path(pt))
    return pt


def _inputs(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(3))


def test_paths_follow_ddc_home(home: Path) -> None:
    assert ddc_home() == home / "home"
    assert teachers_dir() == home / "home" / "teachers"


def test_teacher_learns_and_is_saved_with_metadata(trained: TeacherCheckpoint, home: Path) -> None:
    meta = trained.meta
    assert meta["val_acc"] > 0.7 and meta["test_acc"] > 0.7  # 4 classes: chance is 0.25
    assert trained.path == home / "home" / "teachers" / teacher_filename("lenet5", DataConfig("synth"), FAST)
    assert re.fullmatch(r"lenet5_synth_e2_seed0_[0-9a-f]{8}\.pt", trained.path.name)
    assert meta["sha256"] == hashlib.sha256(trained.path.read_bytes()).hexdigest()
    assert json.loads(sidecar_path(trained.path).read_text()) == json.loads(json.dumps(meta))
    assert meta["data"]["sizes"] == {"train": 432, "val": 48, "test": 160}  # every 10th per class is val
    assert meta["data"]["dataset"] == "synth" and len(meta["data"]["fingerprint"]) == 64
    assert meta["class_names"] == ["hbar", "vbar", "blob", "plus"] and meta["class_indices"] == [0, 1, 2, 3]
    assert meta["num_params"] == trained.spec.params == sum(p.numel() for p in trained.net.parameters())
    assert meta["num_classes"] == 4 and meta["model"] == "lenet5" and meta["seed"] == 0
    assert meta["recipe"]["epochs"] == 2 and meta["recipe"]["flip"] is True
    assert trained.mean == tuple(meta["normalize_mean"]) and len(trained.std) == 1
    for key in ("spec", "flops", "train_seconds", "created", "package_version", "model_kwargs"):
        assert key in meta
    assert not trained.net.training


def test_checkpoint_round_trip_gives_identical_outputs(trained: TeacherCheckpoint) -> None:
    loaded = load_teacher(trained.path)
    assert loaded.spec == trained.spec and not loaded.net.training
    assert loaded.meta["sha256"] == trained.meta["sha256"]
    reference = trained.net.state_dict()
    for key, value in loaded.net.state_dict().items():
        assert torch.equal(value, reference[key]), key
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(_inputs()), trained.net(_inputs()), atol=1e-6, rtol=1e-6)


def test_corrupt_checkpoint_fails_sha256_check(trained: TeacherCheckpoint, tmp_path: Path) -> None:
    pt = _copy(trained, tmp_path)
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch") as e:
        load_teacher(pt)
    assert str(pt) in str(e.value) and trained.meta["sha256"] in str(e.value)


def test_missing_sidecar_or_file(trained: TeacherCheckpoint, tmp_path: Path) -> None:
    pt = _copy(trained, tmp_path, sidecar=False)
    with pytest.raises(CheckpointError, match="no metadata sidecar"):
        load_teacher(pt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_teacher(tmp_path / "nothing.pt")
    sidecar_path(pt).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read sidecar"):
        load_teacher(pt)


def _with_sidecar(path: Path, data: bytes, **meta: object) -> Path:
    path.write_bytes(data)
    sidecar_path(path).write_text(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), **meta}))
    return path


def test_unreadable_or_non_state_dict_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot load .* as a torch state dict"):
        load_teacher(_with_sidecar(tmp_path / "garbage.pt", b"not a torch file at all"))
    buf = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], buf)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_teacher(_with_sidecar(buf, buf.read_bytes()))


def test_torchvision_style_sidecar_without_spec(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=4)
    tv.conv1, tv.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    tv.eval()
    path = tmp_path / "tv.pt"
    torch.save(tv.state_dict(), path)
    _with_sidecar(path, path.read_bytes(), arch="torchvision resnet18, CIFAR stem", val_acc=0.5)
    x = torch.randn(2, 3, 32, 32)
    for kwargs in ({}, {"model": "resnet18", "model_kwargs": {"num_classes": 4}}):
        ckpt = load_teacher(path, **kwargs)
        assert ckpt.meta["model"] == "resnet18" and ckpt.meta["num_classes"] == 4 and ckpt.meta["val_acc"] == 0.5
        with torch.no_grad():
            torch.testing.assert_close(ckpt.net(x), tv(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match=r"fc.weight: expected \(5, 512\) got \(4, 512\)"):
        load_teacher(path, model="resnet18", model_kwargs={"num_classes": 5})


def test_save_refuses_weights_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="refusing to save"):
        save_teacher(build(lenet5(num_classes=4)), lenet5(num_classes=5), {}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_find_and_list_teachers(trained: TeacherCheckpoint, data: DataConfig, tmp_path: Path) -> None:
    assert find_teacher("lenet5", data, 0) == trained.path
    assert find_teacher("lenet5", DataConfig("synth"), 0) == trained.path  # data_dir is not part of the key
    assert find_teacher("lenet5", data, 1) is None
    assert find_teacher("vgg11", data, 0) is None
    assert find_teacher("lenet5", DataConfig("synth", classes="hbar,vbar"), 0) is None
    assert find_teacher("lenet5", DataConfig("synth", max_train=100), 0) is None
    assert [p for p, _ in list_teachers()] == [trained.path]
    (tmp_path / "orphan.pt").write_bytes(b"x")
    [(path, meta)] = list_teachers(tmp_path)
    assert path.name == "orphan.pt" and "sidecar" in meta["error"]
    assert find_teacher("lenet5", data, 0, directory=tmp_path) is None


def test_seeded_training_is_reproducible_and_warns_on_long_runs(data: DataConfig, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = TeacherRecipe(epochs=1, batch_size=32, optim=OptimConfig(lr=0.05), seed=5)
    a = train_teacher("lenet5", data, recipe, device="cpu", out_path=tmp_path / "a.pt", progress=False)
    monkeypatch.setattr(teacher_module, "LONG_RUN_SECONDS", 0.0)
    with pytest.warns(UserWarning, match=r"img/s will take about"):
        b = train_teacher("lenet5", data, recipe, device="cpu", out_path=tmp_path / "b.pt", progress=False)
    assert a.meta["seed"] == 5 and a.path == tmp_path / "a.pt" and sidecar_path(b.path).is_file()
    for key, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[key]), key


def test_the_training_time_bound_is_below_the_measured_time(trained: TeacherCheckpoint, data: DataConfig) -> None:
    bundle = load_data(data)
    floor = min_training_seconds("lenet5", bundle, FAST, device="cpu")
    assert 0 < floor < trained.meta["train_seconds"] and floor < estimate_training_seconds("lenet5", bundle, FAST,
                                                                                           device="cpu")


def test_train_teacher_rejects_bad_arguments(data: DataConfig) -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet99'"):
        train_teacher("resnet99", data, FAST)
    with pytest.raises(ValueError, match="must not set num_classes"):
        train_teacher("lenet5", data, FAST, model_kwargs={"num_classes": 3})
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        TeacherRecipe(epochs=0)


def test_recipe_flips_and_filenames() -> None:
    assert TeacherRecipe().flips("cifar10") and not TeacherRecipe().flips("mnist")
    assert not TeacherRecipe().flips("svhn") and TeacherRecipe(flip=True).flips("mnist")
    base = teacher_filename("resnet18", DataConfig("cifar10"), TeacherRecipe())
    assert re.fullmatch(r"resnet18_cifar10_e10_seed0_[0-9a-f]{8}\.pt", base)
    assert re.fullmatch(r"vgg11_cifar10_vehicles_n500_e3_seed3_[0-9a-f]{8}\.pt", teacher_filename(
        "vgg11", DataConfig("cifar10", classes="vehicles", max_train=500), TeacherRecipe(epochs=3, seed=3)))
    assert teacher_filename("lenet5", DataConfig("mnist", classes=(3, 5)), TeacherRecipe()).startswith(
        "lenet5_mnist_3-5_e10_seed0_")
    # any difference in how a teacher is trained gives another file; the flip default resolved per dataset
    others = [teacher_filename("resnet18", DataConfig("cifar10"), r) for r in (
        TeacherRecipe(optim=OptimConfig(lr=0.1)), TeacherRecipe(label_smoothing=0.0), TeacherRecipe(flip=False))]
    others.append(teacher_filename("resnet18", DataConfig("cifar10"), TeacherRecipe(), {"stem": "imagenet"}))
    assert len({base, *others}) == 5
    assert base == teacher_filename("resnet18", DataConfig("cifar10"), TeacherRecipe(flip=True))


def test_teachers_of_different_recipes_live_side_by_side(trained: TeacherCheckpoint, data: DataConfig) -> None:
    """Once both an 8- and a 10-epoch LeNet-5 became lenet5_mnist_sample_seed0.pt: the second replaced the first."""
    longer = dataclasses.replace(FAST, epochs=3)
    other = train_teacher("lenet5", data, longer, device="cpu", progress=False)
    try:
        assert other.path != trained.path and trained.path.is_file() and "_e3_" in other.path.name
        assert find_teacher("lenet5", data, recipe=FAST) == trained.path
        assert find_teacher("lenet5", data, recipe=longer) == other.path
        assert find_teacher("lenet5", data, recipe=dataclasses.replace(FAST, epochs=4)) is None
        assert load_teacher(trained.path).meta["recipe"]["epochs"] == 2
    finally:
        other.path.unlink()
        sidecar_path(other.path).unlink()


def test_atomic_writes_leave_nothing_half_written(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"partial")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_a_teacher_of_your_own_architecture_trains_and_runs_in_the_env(data: DataConfig, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """An architecture no zoo builder makes (three convs around a residual block), described with the public IR,
    trained with ``ddc teacher train --spec`` and given to a DDC id as ``teacher=path``: the env takes the
    checkpoint's own architecture (no zoo name), and its episodes train real students."""
    spec = NetSpec((Conv("stem", 8), Conv("down", 16, stride=2), Block("res", 16, 16), Conv("wide", 24),
                    GlobalPool("gap"), Linear("head", 4)), in_channels=1, input_size=(28, 28), arch="tinyres")
    spec_file, out = tmp_path / "tinyres.json", tmp_path / "tinyres.pt"
    spec_file.write_text(spec.to_json())
    assert main(["teacher", "train", "--spec", str(spec_file), "--dataset", "synth", "--data-dir", data.data_dir,
                 "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--device", "cpu", "--out", str(out),
                 "--quiet"]) == 0
    assert f"saved {out}" in capsys.readouterr().out
    ckpt = load_teacher(out)
    assert ckpt.spec == spec and ckpt.meta["model"] == "tinyres" and ckpt.meta["val_acc"] > 0.5

    env = gym.make("DDC-LeNet5-MNIST", teacher=str(out), dataset="synth", data_dir=data.data_dir,
                   fidelity="smoke", latency="flops", device="cpu")
    u = env.unwrapped
    assert u.task.teacher_spec == spec and u.task.facts["model"] == "tinyres"
    assert {d.unit for d in u.decisions} >= {"down", "res", "wide"}
    rng = np.random.default_rng(0)
    for _ in range(2):
        reward, info = random_episode(env, rng)
        assert info["status"] == "ok" and info["train_seconds"] > 0 and 0.0 < info["param_ratio"] <= 1.0
        assert info["teacher_val_acc"] == pytest.approx(ckpt.meta["val_acc"], abs=0.02)
    env.close()


def test_train_teacher_takes_a_netspec_that_fits_the_data(data: DataConfig, tmp_path: Path) -> None:
    spec = NetSpec((Conv("a", 4), GlobalPool("gap"), Linear("fc", 10)), in_channels=1, input_size=(28, 28))
    with pytest.raises(ValueError, match=r"does not fit synth: num_classes=10 \(the data's: 4\)"):
        train_teacher(spec, data, FAST, device="cpu", progress=False)
    with pytest.raises(ValueError, match="model_kwargs only shape a zoo model"):
        train_teacher(spec, data, FAST, model_kwargs={"stem": "cifar"})
    fits = NetSpec((Conv("a", 4), GlobalPool("gap"), Linear("fc", 4)), in_channels=1, input_size=(28, 28), arch="mine")
    ckpt = train_teacher(fits, data, TeacherRecipe(epochs=1, batch_size=64), device="cpu", progress=False)
    assert ckpt.spec == fits
    assert re.fullmatch(rf"mine-{fits.hash()[:8]}_synth_e1_seed0_[0-9a-f]{{8}}\.pt", ckpt.path.name)


def test_a_teacher_near_chance_accuracy_is_not_accepted_silently(tmp_path):
    """A teacher within 5 points of chance (here: untrained, on 4 classes) gets a warning naming its accuracy when a
    task loads it; a real teacher does not."""
    from ddc_env.arch import build
    from ddc_env.models import get_model, save_teacher
    from ddc_env.task import TaskConfig, load_task
    from synthetic import write_synthetic_npz

    write_synthetic_npz(tmp_path, "near", classes=4, n_train=80, n_test=20)
    spec = get_model("lenet5", num_classes=4)
    weak = save_teacher(build(spec).eval(), spec, {"model": "lenet5", "val_acc": 0.26}, tmp_path / "weak.pt")
    with pytest.warns(UserWarning, match=r"scores 0\.260 .* within 5% of chance \(0\.250 for 4 classes\)"):
        load_task(TaskConfig(model="lenet5", teacher=str(weak.path), dataset="near", data_dir=str(tmp_path)),
                  progress=False)
    fine = save_teacher(build(spec).eval(), spec, {"model": "lenet5", "val_acc": 0.9}, tmp_path / "fine.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_task(TaskConfig(model="lenet5", teacher=str(fine.path), dataset="near", data_dir=str(tmp_path)),
                  progress=False)
