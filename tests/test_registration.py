"""Env ids in Gymnasium's convention: versioned ids (``DDC-LeNet5-MNIST-v0``), the unversioned names the README uses,
and the ``ddc_env:`` module prefix, all through the real ``gym.make``, without warnings."""
from __future__ import annotations

import json
import os

import gymnasium as gym
import pytest

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.registration import LIVE_IDS, env_config, resolve_id
from isolated import run_isolated

SPELLINGS = ("DDC-LeNet5-MNIST-v0", "DDC-LeNet5-MNIST", "ddc_env:DDC-LeNet5-MNIST", "ddc_env:DDC-LeNet5-MNIST-v0")


@pytest.fixture()
def kwargs(synth_teacher, synth_dir) -> dict:
    return {"teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir), "fidelity": "smoke",
            "latency": "flops", "device": "cpu"}


@pytest.mark.parametrize("env_id", SPELLINGS)
@pytest.mark.filterwarnings("ignore:.*Using the latest versioned environment")  # see the next test
def test_every_spelling_of_an_id_makes_the_v0_env(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    try:
        assert env.spec.id == "DDC-LeNet5-MNIST-v0"
        assert env.unwrapped.config.model == "lenet5" and env.unwrapped.config.channel_round == 2  # the preset
        env.reset(seed=0)
    finally:
        env.close()


def test_no_spelling_warns_in_a_users_script(kwargs):
    """Gymnasium warns when an unversioned name resolves to its latest version; ddc_env's import silences that for
    its own ids (in a fresh interpreter: a warnings filter added while pytest collects does not outlive it)."""
    code = f"""
import json, warnings
import gymnasium as gym
import ddc_env
with warnings.catch_warnings(record=True) as caught:
    for env_id in {SPELLINGS!r}:
        gym.make(env_id, **json.loads({json.dumps(json.dumps(kwargs))})).close()
print(json.dumps([str(w.message) for w in caught]))
"""
    result = run_isolated(["-c", code], timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_resolve_id_and_env_config_accept_every_spelling():
    for spelling in ("DDC-ResNet18-CIFAR10", "DDC-ResNet18-CIFAR10-v0", "ddc_env:DDC-ResNet18-CIFAR10"):
        assert resolve_id(spelling) == "DDC-ResNet18-CIFAR10-v0"
        assert env_config(spelling, {"fidelity": "zero"}).model == "resnet18"
    assert all(env_id.endswith("-v0") for env_id in LIVE_IDS)


@pytest.mark.parametrize("env_id", ["DDC-LeNet5-MNIST-v7", "DDC-LeNet6-MNIST"])
def test_unknown_ids_and_versions_are_refused(env_id):
    with pytest.raises(ValueError, match=r"unknown env_id .*DDC-LeNet5-MNIST-v0"):
        resolve_id(env_id)
    with pytest.raises(gym.error.Error):
        gym.make(env_id)
