"""Tests for the Gymnasium environment (ddc_env.env) and its registered ids, on a LeNet-5 teacher trained once
on a small synthetic dataset in a temporary directory (no network, nothing written outside tmp paths)."""
from __future__ import annotations

import functools
import importlib
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import ddc_env
import ddc_env.registration as registration
from ddc_env.arch import build
from ddc_env.data import DataConfig
from ddc_env.env import FEATURES, OBS_DIM, DDCEnv, EnvConfig
from ddc_env.models import get_model_spec
from ddc_env.models.checkpoints import TeacherCheckpoint
from ddc_env.models.teacher import TeacherRecipe, train_teacher
from ddc_env.store import ResultsStore
from tests.checkers import check_env
from tests.synthetic import write_synthetic_npz

FIDELITY = "smoke"


@dataclass(frozen=True)
class World:
    root: Path
    data_dir: Path
    teacher: TeacherCheckpoint

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """DDCEnv arguments for the synthetic LeNet-5 teacher at smoke fidelity, FLOP-timed."""
        return {"model": "lenet5", "teacher": str(self.teacher.path), "dataset": "synth",
                "data_dir": str(self.data_dir), "fidelity": FIDELITY, "latency": "flops", "device": "cpu",
                **overrides}

    def env(self, **overrides: Any) -> DDCEnv:
        return DDCEnv(**self.kwargs(**overrides))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """A LeNet-5 teacher trained once on 4-class synthetic 28x28 images, cached under a temporary DDC_HOME."""
    root = tmp_path_factory.mktemp("env")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DDC_HOME", str(root / "home"))
        mp.delenv("DDC_DATA_DIR", raising=False)
        data_dir = root / "data"
        write_synthetic_npz(data_dir, "synth", classes=4)
        teacher = train_teacher("lenet5", DataConfig("synth", data_dir=str(data_dir)),
                                TeacherRecipe(epochs=3, batch_size=64), device="cpu", progress=False)
        yield World(root, data_dir, teacher)


def play(env: DDCEnv, choices: dict[str, Any], seed: int | None = None) -> tuple[float, dict[str, Any]]:
    """Run one episode making ``choices`` (decision name -> "remove" | width; others keep 1.0)."""
    env.reset(seed=seed)
    if isinstance(env.action_space, gym.spaces.MultiDiscrete):
        action = np.array([env.action_of(choices.get(d.name, 1.0)) for d in env.decisions])
        _, reward, terminated, _, info = env.step(action)
        assert terminated
        return reward, info
    while True:
        action = env.action_of(choices.get(env.current_decision.name, 1.0))
        if not env.action_masks()[action]:  # the removal pass of a unit that is only shrunk
            action = env.action_of(1.0)
        _, reward, terminated, truncated, info = env.step(action)
        assert not truncated
        if terminated:
            return reward, info
        assert reward == 0.0 and info == {}


def random_episode(env: DDCEnv, rng: np.random.Generator) -> tuple[float, dict[str, Any]]:
    """One episode of uniformly random allowed actions."""
    if isinstance(env.action_space, gym.spaces.MultiDiscrete):
        masks = env.action_masks().reshape(len(env.decisions), -1)
        _, reward, _, _, info = env.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
        return reward, info
    while True:
        _, reward, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        if terminated:
            return reward, info


# -- configuration -----------------------------------------------------------------------------------------
def test_unknown_argument_lists_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown DDCEnv argument\(s\) \['bogus'\].*width_choices"):
        DDCEnv(bogus=1)


@pytest.mark.parametrize("overrides, message", [
    ({"action_mode": "batch"}, r"'batch'.*sequential.*one_shot"),
    ({"stages": "three"}, r"'three'.*two_stage.*joint"),
    ({"latency": "guess"}, r"'guess'.*model.*measured.*flops"),
    ({"masked_action": "ignore"}, r"'ignore'.*nearest.*penalty"),
    ({"latency_threads": 0}, r"latency_threads must be a positive integer"),
    ({"seed": 1.5}, r"seed must be an integer"),
    ({"max_train": -5}, r"max_train must be a positive integer"),
    ({"render_mode": "human"}, r"'human'.*ansi"),
    ({"width_choices": (0.5, 0.75)}, r"include 1.0"),
    ({"width_choices": (0.5, 0.25, 1.0)}, r"strictly increasing"),
    ({"width_choices": (0.0, 1.0)}, r"each of width_choices must be a finite number > 0 and <= 1, got 0.0"),
    ({"width_choices": (0.5, 1.5)}, r"each of width_choices must be a finite number > 0 and <= 1, got 1.5"),
    ({"width_choices": ("0.5", 1.0)}, r"each of width_choices must be a finite number"),
    ({"width_choices": 0.5}, r"width_choices must be a non-empty list of numbers"),
    ({"device": "gpu"}, r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ({"model_kwargs": {"stem": "tiny"}}, r"model_kwargs of resnet18: stem must be 'cifar' or 'imagenet'"),
    ({"model_kwargs": {"depth": 3}}, r"model_kwargs of resnet18: .*depth"),
    ({"classes": 3}, r"classes must be None, a string or a list of class names or indices, got 3"),
    ({"teacher_recipe": {"optim": {"lr": float("nan")}}}, r"lr must be a finite number > 0, got nan"),
    ({"teacher_recipe": {"label_smoothing": "x"}}, r"label_smoothing must be a finite number"),
    ({"teacher_recipe": {"amp": "fp8"}}, r"unknown amp 'fp8'"),
    ({"fidelity": {"name": "fast", "lr": float("nan")}}, r"fidelity lr must be a finite number > 0, got nan"),
    ({"fidelity": {"name": "fast", "train_samples": -5}}, r"fidelity train_samples must be a positive integer"),
    ({"model": "alexnet"}, r"'alexnet'.*resnet18"),
    ({"fidelity": "ludicrous"}, r"'ludicrous'.*smoke"),
    ({"fidelity": {"name": "fast", "epochz": 2}}, r"epochz"),
    ({"reward": "best"}, r"'best'.*ddc"),
    ({"channel_round": 0}, r"channel_round"),
    ({"teacher_recipe": {"epochz": 1}}, r"epochz.*allowed"),
    ({"teacher": 3}, r"teacher must be"),
])
def test_bad_values_raise_naming_what_is_allowed(overrides, message):
    with pytest.raises(ValueError, match=message):
        EnvConfig(**overrides)


# -- gymnasium / SB3 contracts -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sequential", "one_shot", "continuous"])
def test_gymnasium_and_sb3_check_env(world, mode):
    env = gym.make("DDC-LeNet5-MNIST", **world.kwargs(action_mode=mode)).unwrapped  # with a spec: render checks
    check_env(env)
    assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.dtype == np.float32
    expected = {"sequential": gym.spaces.Discrete, "one_shot": gym.spaces.MultiDiscrete, "continuous": gym.spaces.Box}
    assert isinstance(env.action_space, expected[mode])


@pytest.mark.parametrize("mode", ["sequential", "one_shot"])
def test_maskable_ppo_trains_on_it(world, mode):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    env = world.env(action_mode=mode, fidelity="zero")
    model = sb3_contrib.MaskablePPO("MlpPolicy", env, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu")
    model.learn(8)
    action, _ = model.predict(env.reset()[0], action_masks=env.action_masks())
    assert env.action_space.contains(action)


def test_spaces_and_masks(world):
    env = world.env(stages="joint", kernel_shrink=True)
    k = len(env.task.width_choices)
    assert env.action_space.n == 1 + 2 * k
    names = [d.name for d in env.decisions]
    assert names == ["conv1", "conv2", "fc1", "fc2"]
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs.shape == (OBS_DIM,)
    mask = env.action_masks()
    assert mask.dtype == bool and mask.shape == (1 + 2 * k,)
    assert not mask[0] and mask[1:].all()  # conv1 (5x5, same padding): no removal, every width and kernel
    env.step(env.action_of(1.0))
    mask = env.action_masks()  # conv2 (5x5, no padding): widths only
    assert not mask[0] and mask[1:k + 1].all() and not mask[k + 1:].any()
    env.step(env.action_of(1.0))
    assert env.action_masks()[0]  # fc1 is removable

    two = world.env()
    two.reset()
    assert two.current_pass == "removal" and two.current_decision.name == "fc1"
    removal = two.action_masks()
    assert removal.tolist() == [True] + [False] * (k - 1) + [True]  # remove, or keep at 1.0
    one = world.env(action_mode="one_shot")
    assert one.action_space.nvec.tolist() == [1 + k] * 4
    assert one.action_masks().shape == (4 * (1 + k),)


def test_reset_info_has_the_layer_table(world):
    env = world.env()
    obs, info = env.reset(seed=0)
    table = info["layer_table"]
    assert info["n_decisions"] == len(table) == len(env.decisions) == 4 and info["stages"] == "two_stage"
    assert [row["name"] for row in table] == [d.name for d in env.decisions]
    for row in table:
        assert {"name", "kind", "unit_type", "channels", "kernel", "stride", "removable", "shrinkable",
                "param_share", "features"} <= set(row)
        assert len(row["features"]) == OBS_DIM and all(0.0 <= f <= 1.0 for f in row["features"])
    assert sum(row["param_share"] for row in table) < 1.0
    fc1 = next(row for row in table if row["name"] == "fc1")
    np.testing.assert_array_equal(obs, np.array(fc1["features"], dtype=np.float32))  # first: fc1's removal
    assert table[0]["unit_type"] == "conv" and table[0]["channels"] == 6 and table[0]["kernel"] == 5
    _, info2 = env.reset()
    assert info2["layer_table"] == table and info2["layer_table"] is not table


def test_observation_tracks_progress(world):
    env = world.env(stages="joint")
    obs0, _ = env.reset(seed=0)
    kept, prev, position = (FEATURES.index(name) for name in ("params_kept", "prev_width", "position"))
    assert obs0[kept] == 1.0 and obs0[prev] == 1.0
    obs1, *_ = env.step(env.action_of(0.5))  # conv1 at half width
    assert obs1[prev] == pytest.approx(0.5) and obs1[kept] < obs0[kept]
    assert obs1[position] > obs0[position]
    obs2, *_ = env.step(env.action_of(1.0))
    obs3, *_ = env.step(env.action_of("remove"))  # fc1 removed
    assert obs3[prev] == 0.0 and obs3[kept] < obs2[kept]


# -- episodes ----------------------------------------------------------------------------------------------
def test_same_choices_same_student_in_every_mode_and_cached(world, tmp_path):
    store = str(tmp_path / "store.sqlite")
    choices = {"conv1": 0.5, "conv2": 0.8, "fc1": "remove", "fc2": 0.5}
    infos = []
    for overrides in ({"stages": "two_stage"}, {"stages": "joint"}, {"action_mode": "one_shot"}):
        env = world.env(store=store, **overrides)
        reward, info = play(env, choices)
        assert info["status"] == "ok" and info["reward"] == reward
        infos.append(info)
    assert len({i["spec_hash"] for i in infos}) == 1
    assert [i["cache_hit"] for i in infos] == [False, True, True]
    assert len({i["reward"] for i in infos}) == 1
    first = infos[0]
    assert first["choices"] == {**choices, "fc1": 0.0}  # 0.0 = removed
    assert 0.0 < first["val_acc"] <= 1.0 and first["teacher_val_acc"] > 0.0
    assert first["params"] < first["teacher_params"] and first["flops"] < first["teacher_flops"]
    assert first["param_ratio"] == pytest.approx(first["params"] / first["teacher_params"])
    for key in ("acc_ratio", "flop_ratio", "size_bytes", "teacher_size_bytes", "spec", "eval_seconds",
                "train_seconds", "fidelity"):
        assert key in first
    units = {u["name"]: u for u in first["spec"]["units"]}
    assert "fc1" not in units and units["conv1"]["out_channels"] < 6
    rows = ResultsStore(store).query()  # the student once (beside the uniform students the reward calibrates on)
    assert [r["spec_hash"] for r in rows].count(first["spec_hash"]) == 1


def test_repeated_student_is_a_cache_hit(world):
    env = world.env()
    choices = {"conv2": 0.5, "fc2": "remove"}
    _, first = play(env, choices)
    _, second = play(env, choices)
    assert first["cache_hit"] is False and second["cache_hit"] is True
    assert second["spec_hash"] == first["spec_hash"] and second["val_acc"] == first["val_acc"]
    assert second["eval_seconds"] == first["eval_seconds"]  # the stored record, not a second training


def test_same_seed_same_rewards(world):
    def rewards(seed: int) -> list[tuple[float, str]]:
        env = world.env()  # no store: every student is really trained
        env.reset(seed=seed)
        out = []
        for _ in range(2):
            reward, info = random_episode(env, env.np_random)
            out.append((reward, info["spec_hash"]))
            env.reset()
        return out

    assert rewards(7) == rewards(7)


def test_class_subset_student_and_auto_teacher(world):
    env = world.env(teacher="auto", classes=(0, 2), teacher_recipe={"epochs": 3, "batch_size": 64})
    assert env.task.teacher.path == world.teacher.path  # the cached whole-dataset teacher of that recipe
    assert env.task.class_indices == (0, 2)
    _, info = play(env, {"fc1": 0.5})
    assert info["status"] == "ok" and info["spec"]["units"][-1]["out_features"] == 2


def test_auto_teacher_trains_with_a_warning(world, tmp_path, monkeypatch):
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    with pytest.warns(UserWarning, match="training one now"):
        env = world.env(teacher="auto", teacher_epochs=1)
    assert env.task.teacher.path.parent == tmp_path / "home" / "teachers"
    assert env.task.teacher.meta["recipe"]["epochs"] == 1


def test_masked_action_ends_with_invalid_penalty(world):
    env = world.env(masked_action="penalty")
    env.reset()
    _, reward, terminated, truncated, info = env.step(env.action_of(0.5))  # fc1's removal pass: no widths
    assert (reward, terminated, truncated) == (-1.0, True, False)
    assert info["status"] == "invalid" and "fc1" in info["reason"] and "removal" in info["reason"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)

    one = world.env(action_mode="one_shot", masked_action="penalty")
    one.reset()
    action = np.array([one.action_of(c) for c in ("remove", 1.0, 1.0, 1.0)])  # conv1 cannot be removed
    _, reward, terminated, _, info = one.step(action)
    assert reward == -1.0 and terminated and info["status"] == "invalid" and "conv1" in info["reason"]


def test_masked_action_takes_the_nearest_allowed_one_by_default(world):
    env = world.env()
    env.reset()
    _, _, terminated, _, _ = env.step(env.action_of(0.5))  # fc1's removal pass: a width means "keep"
    assert not terminated and env.current_decision.name == "fc2"
    env.step(env.action_of("remove"))  # fc2 removed (allowed)
    assert env.current_pass == "shrink" and env.current_decision.name == "conv1"
    _, _, _, _, _ = env.step(env.action_of("remove"))  # conv1 cannot be removed: its narrowest width instead
    env.step(env.action_of(1.0))
    _, reward, terminated, _, info = env.step(env.action_of(0.8))  # fc1
    assert terminated and info["status"] == "ok" and info["masked_actions"] == 2
    assert info["choices"] == {"conv1": 0.25, "conv2": 1.0, "fc1": 0.8, "fc2": 0.0}

    one = world.env(action_mode="one_shot")
    one.reset()
    action = np.array([one.action_of(c) for c in ("remove", 0.5, 1.0, "remove")])
    _, _, terminated, _, info = one.step(action)
    assert terminated and info["status"] == "ok" and info["masked_actions"] == 1
    assert info["choices"]["conv1"] == 0.25 and info["choices"]["fc2"] == 0.0


@pytest.mark.parametrize("overrides", [{"stages": "two_stage"}, {"stages": "two_stage", "width_choices": (1.0,)},
                                       {"stages": "joint", "masked_action": "penalty"},
                                       {"action_mode": "one_shot", "masked_action": "penalty"}])
def test_peek_step_foresees_the_step_and_prefetch_serves_it(world, overrides, monkeypatch):
    """peek_step says whether a step ends the episode and on which student (any action, masked ones too);
    a prefetched student is the record of the episode that ends on it (scored once, not a cache hit)."""
    env = world.env(**overrides)
    calls = []

    def evaluate(spec):
        calls.append(spec.hash())
        return {"status": "ok", "spec_hash": spec.hash(), "eval_seconds": 1.0}

    monkeypatch.setattr(env.scorer.inner, "evaluate", evaluate)
    env.reward_fn = lambda record: 0.0
    rng = np.random.default_rng(0)
    one_shot = isinstance(env.action_space, gym.spaces.MultiDiscrete)
    seen: set[str] = set()
    for episode in range(20):
        env.reset()
        while True:
            if one_shot:
                action = rng.integers(0, len(env.action_choices), len(env.decisions))
            else:
                mask = env.action_masks()
                action = int(rng.choice(np.flatnonzero(mask) if rng.random() < 0.9 else len(mask)))
            ends, choices = env.peek_step(action)
            if ends and choices is not None and episode % 2:
                env.prefetch(choices)
            _, _, terminated, _, info = env.step(action)
            assert terminated == ends
            if terminated:
                break
        if info["status"] == "invalid":
            assert choices is None
        else:
            assert env.task.student_spec(choices).hash() == info["spec_hash"] in calls
            assert info["cache_hit"] is (info["spec_hash"] in seen)
            seen.add(info["spec_hash"])
    assert len(calls) == len(set(calls)) == len(seen)  # a prefetched student was scored once, for its episode
    with pytest.raises(RuntimeError, match="the episode is over"):
        env.peek_step(0 if not one_shot else np.zeros(len(env.decisions), dtype=int))


@pytest.mark.parametrize("action", [8, -1, 1.5, "remove", np.array([1])])
def test_out_of_space_action_raises(world, action):
    env = world.env()
    env.reset()
    with pytest.raises(ValueError, match="action must be an integer"):
        env.step(action)


def test_out_of_space_one_shot_action_raises(world):
    env = world.env(action_mode="one_shot")
    env.reset()
    for action in (np.array([1, 1, 1]), np.array([1, 1, 1, 8]), np.array([1.0, 1.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match="one-shot action"):
            env.step(action)


@pytest.mark.parametrize("model", ["lenet5", "resnet18", "vgg11"])
@pytest.mark.parametrize("overrides", [{"stages": "two_stage"}, {"stages": "joint", "kernel_shrink": True},
                                       {"action_mode": "one_shot", "kernel_shrink": True}])
def test_masked_random_actions_always_give_valid_students(world, tmp_path, monkeypatch, model, overrides):
    """Masks allow only choices apply_decisions accepts (the evaluation itself is stubbed out here)."""
    shape = {"in_channels": 1, "input_size": (28, 28)} if model == "lenet5" else {}
    spec = get_model_spec(model, num_classes=4, **shape)
    if model != "lenet5":
        write_synthetic_npz(tmp_path, "rgb", classes=4, size=32, channels=3, n_train=120, n_test=40)
    torch.manual_seed(0)
    teacher = TeacherCheckpoint(build(spec).eval(), spec, {}, tmp_path / "random.pt")
    env = DDCEnv(**world.kwargs(model=model, teacher=teacher, reward=lambda record: 0.0, **overrides,
                                **({} if model == "lenet5" else {"dataset": "rgb", "data_dir": str(tmp_path)})))
    monkeypatch.setattr(env.scorer.inner, "evaluate", lambda s: {"status": "ok", "spec_hash": s.hash(),
                                                                 "eval_seconds": 0.0})
    rng = np.random.default_rng(0)
    hashes = set()
    for _ in range(60):
        env.reset()
        _, info = random_episode(env, rng)
        assert info["status"] == "ok", info.get("reason")
        hashes.add(info["spec_hash"])
    assert len(hashes) > 10


def test_modes_agree_on_resnet_stages(world, tmp_path, monkeypatch):
    spec = get_model_spec("resnet18", num_classes=4)
    write_synthetic_npz(tmp_path, "rgb", classes=4, size=32, channels=3, n_train=120, n_test=40)
    teacher = TeacherCheckpoint(build(spec).eval(), spec, {}, tmp_path / "random.pt")
    choices = {"stage1": 0.5, "layer1.1": "remove", "stage3": 0.25, "layer3.1": 0.6, "layer4.1": "remove"}
    hashes = []
    for overrides in ({"stages": "two_stage"}, {"stages": "joint"}, {"action_mode": "one_shot"}):
        env = DDCEnv(**world.kwargs(model="resnet18", teacher=teacher, dataset="rgb", data_dir=str(tmp_path),
                                    reward="n2n", **overrides))
        monkeypatch.setattr(env.scorer.inner, "evaluate", lambda s: {
            "status": "ok", "spec_hash": s.hash(), "val_acc": 1.0, "teacher_val_acc": 1.0, "params": s.params,
            "teacher_params": spec.params, "flops": s.flops, "teacher_flops": spec.flops, "eval_seconds": 0.0})
        _, info = play(env, choices)
        assert info["status"] == "ok"
        hashes.append(info["spec_hash"])
    assert len(set(hashes)) == 1


# -- pickling, vector envs, registration, rendering ------------------------------------------------------
def test_pickle_keeps_the_config_and_reloads(world, tmp_path):
    env = world.env(store=str(tmp_path / "store.sqlite"), stages="joint")
    env.reset()
    env.step(env.action_of(0.5))
    clone = pickle.loads(pickle.dumps(env))
    assert clone.config == env.config and clone.steps_left == 4  # a fresh episode
    reward, info = play(env, {"fc2": 0.5})
    reward2, info2 = play(clone, {"fc2": 0.5})
    assert reward2 == reward and info2["cache_hit"] is True  # found in the shared store


def test_async_vector_env_runs_full_episodes(world, tmp_path, monkeypatch):
    repo = str(Path(ddc_env.__file__).resolve().parents[1])  # spawned workers must import ddc_env
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    store = tmp_path / "store.sqlite"
    make = functools.partial(DDCEnv, **world.kwargs(store=str(store), stages="joint", fidelity="zero"))
    envs = gym.vector.AsyncVectorEnv([make, make], context="spawn")
    try:  # terminate the workers in any case: a failure must not leave the test waiting on a pipe
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        finished = np.zeros(2, dtype=int)
        statuses = []
        for _ in range(30):
            masks = envs.call("action_masks")
            actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
            _, rewards, terminated, truncated, infos = envs.step(actions)
            assert not truncated.any()
            for i in np.flatnonzero(terminated):
                statuses.append(infos["status"][i])
                assert rewards[i] == infos["reward"][i]
            finished += terminated
            if (finished >= 2).all():
                break
    finally:
        envs.close(terminate=True)
    assert (finished >= 2).all() and set(statuses) == {"ok"}
    assert ResultsStore(store).count() >= 2


def test_registered_ids(world):
    names = {"DDC-ResNet18-CIFAR10", "DDC-ResNet34-CIFAR10", "DDC-VGG11-CIFAR10", "DDC-VGG16-CIFAR10",
             "DDC-VGG19-CIFAR10", "DDC-MobileNetV2-CIFAR10",
             "DDC-ResNet18-CIFAR100", "DDC-LeNet5-MNIST", "DDC-VGG11-MNIST", "DDC-ResNet18-CIFAR10-Vehicles",
             "DDC-ResNet18-CIFAR10-Animals"}
    assert set(registration.LIVE_IDS) == {f"{name}-v0" for name in names}
    assert set(registration.BENCH_IDS) == {"DDC-Bench-LeNet5-MNIST-v0", "DDC-Bench-ResNet18-CIFAR10-v0"}
    for env_id in registration.BENCH_IDS:
        assert gym.registry[env_id].entry_point == "ddc_env.twins:DDCBenchEnv"
    for env_id in registration.LIVE_IDS:
        assert gym.registry[env_id].entry_point == "ddc_env.env:DDCEnv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(registration)  # registering again is silent
        for name in names:  # the names without a version (README, mission) resolve to v0, without a warning
            assert registration.resolve_id(name) == f"{name}-v0"
            assert registration.resolve_id(f"ddc_env:{name}") == f"{name}-v0"
        env = gym.make("DDC-LeNet5-MNIST", **world.kwargs())
        assert env.spec.id == "DDC-LeNet5-MNIST-v0"
        env.close()
    assert gym.registry["DDC-ResNet18-CIFAR10-Vehicles-v0"].kwargs["classes"] == "vehicles"


def test_gym_make_with_overrides(world):
    kwargs = world.kwargs()
    del kwargs["model"]
    env = gym.make("DDC-LeNet5-MNIST", **kwargs)
    assert env.unwrapped.config.model == "lenet5" and env.unwrapped.config.dataset == "synth"
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(env.unwrapped.action_of("remove"))  # fc1 removed
    assert not terminated
    env.close()
    with pytest.raises(ValueError, match=r"\['bogus'\].*allowed"):
        gym.make("DDC-LeNet5-MNIST", bogus=1)


def test_render_ansi(world):
    env = world.env(render_mode="ansi")
    env.reset()
    text = env.render()
    assert isinstance(text, str) and "fc1" in text and "removal pass" in text
    play(env, {"fc1": "remove", "conv1": 0.5})
    text = env.render()
    assert "remove" in text and "width 0.5" in text and "val_acc" in text and "reward" in text


def test_the_env_anneals_the_budget_reward(world):
    """N2N's budget penalty: epsilon falls from 1 to 0 over the env's own episodes, so an over-budget student's
    reward goes from the base reward to -1 without any agent calling the reward."""
    from ddc_env.rewards import n2n

    env = world.env(reward={"name": "budget", "max_param_ratio": 0.2, "anneal_episodes": 2})
    rewards = [play(env, {"fc2": 0.5})[0] for _ in range(3)]  # ratio ~0.9: over budget, a cache hit after the first
    base = n2n(play(world.env(reward="n2n"), {"fc2": 0.5})[1])
    assert rewards[0] == pytest.approx(base)  # eps = 1: (1 - 1) + 1 * R
    assert rewards[1] == pytest.approx(-0.5 + 0.5 * base)  # eps = 0.5
    assert rewards[2] == -1.0  # eps = 0


def test_the_calibration_is_computed_once_and_shared_by_every_process(world, tmp_path):
    """The calibrated reward's thresholds come from uniform students scored once per task and fidelity and kept in
    DDC_HOME: fresh processes (with another thread count) read the same numbers."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, torch; torch.set_num_threads(int(sys.argv[2])); from ddc_env.env import DDCEnv; "
            "env = DDCEnv(**json.loads(sys.argv[1])); print(json.dumps(env.reward_function().__dict__))")
    kwargs = json.dumps(world.kwargs())
    env = {**os.environ, "DDC_HOME": str(tmp_path / "home")}
    outputs = [subprocess.run([sys.executable, "-c", code, kwargs, str(threads)], capture_output=True, text=True,
                              env=env, check=True).stdout.strip().splitlines()[-1] for threads in (1, 2)]
    assert outputs[0] == outputs[1] and json.loads(outputs[0])["acc_slope"] > 0
    assert len(list((tmp_path / "home" / "calibration").glob("*.json"))) == 1
