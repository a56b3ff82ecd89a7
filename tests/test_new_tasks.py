"""The VGG-16 and MobileNetV2 ids: both env checkers pass and the identity student scores exactly its teacher at
``zero``, on small synthetic versions (random-weight teachers on synthetic 32x32 RGB images; no shared files)."""
from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import ddc_env  # noqa: F401  (registers the ids)
from checkers import check_env
from ddc_env.arch import build
from ddc_env.models import get_model, save_teacher
from synthetic import write_synthetic_npz


@pytest.fixture(scope="module")
def rgb_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rgb")
    write_synthetic_npz(directory, "rgb", classes=4, size=32, channels=3, n_train=160, n_test=40)
    return directory


@pytest.mark.parametrize("env_id, model", [("DDC-VGG16-CIFAR10", "vgg16"),
                                           ("DDC-MobileNetV2-CIFAR10", "mobilenet_v2")])
def test_new_ids_pass_the_checkers_and_the_identity_student_is_the_teacher(rgb_dir, tmp_path, env_id, model):
    torch.manual_seed(0)
    spec = get_model(model, num_classes=4)
    path = save_teacher(build(spec).eval(), spec, {"model": model}, tmp_path / f"{model}.pt").path
    env = gym.make(env_id, teacher=str(path), dataset="rgb", data_dir=str(rgb_dir), fidelity="zero",
                   latency="flops", device="cpu").unwrapped
    assert env.config.model == model and len(env.decisions) > 10
    record = env.evaluate_choices({})
    assert record["val_acc"] == record["teacher_val_acc"] and record["params"] == spec.params
    check_env(env)


@pytest.mark.parametrize("env_id, model", [("DDC-VGG16-CIFAR10", "vgg16"),
                                           ("DDC-MobileNetV2-CIFAR10", "mobilenet_v2")])
def test_new_ids_in_amcs_mode_meet_a_flops_budget(rgb_dir, tmp_path, env_id, model):
    """Keep ratios under AMC's budget clipping on the new ids: both checkers pass and the student meets the budget."""
    torch.manual_seed(0)
    spec = get_model(model, num_classes=4)
    path = save_teacher(build(spec).eval(), spec, {"model": model}, tmp_path / f"{model}.pt").path
    env = gym.make(env_id, teacher=str(path), dataset="rgb", data_dir=str(rgb_dir), fidelity="zero",
                   latency="flops", device="cpu", action_mode="continuous", budget={"flops": 0.5}).unwrapped
    check_env(env)
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(env.action_space.sample())
    assert info["status"] == "ok" and info["flop_ratio"] <= 0.5 + 1e-9
