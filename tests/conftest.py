"""Shared fixtures: a small synthetic dataset and a LeNet-5 teacher trained on it once per session."""
from __future__ import annotations

import pytest

from ddc_env.data import DataConfig
from ddc_env.models.checkpoints import TeacherCheckpoint
from ddc_env.models.teacher import TeacherRecipe, train_teacher
from ddc_env.train import OptimConfig
from synthetic import write_synthetic_npz


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """Every test writes its caches (teachers, latency tables, decoded data) under a temporary DDC_HOME, never into
    the user's: the latency table there is what benchmark tables are timed with."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DDC_HOME", str(tmp_path_factory.mktemp("ddc_home")))
        yield


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory):
    """A folder holding synth_train.npz / synth_test.npz: 4 learnable classes of 28x28 grey images."""
    directory = tmp_path_factory.mktemp("synth")
    write_synthetic_npz(directory, n_train=800, n_test=200, classes=4)
    return directory


@pytest.fixture(scope="session")
def synth_teacher(synth_dir, tmp_path_factory: pytest.TempPathFactory) -> TeacherCheckpoint:
    """LeNet-5 trained for a few seconds on the synthetic data (val accuracy well above chance)."""
    recipe = TeacherRecipe(epochs=4, batch_size=64, optim=OptimConfig(lr=0.05), flip=False)
    out = tmp_path_factory.mktemp("teachers") / "lenet5_synth.pt"
    return train_teacher("lenet5", DataConfig("synth", data_dir=str(synth_dir)), recipe, device="cpu",
                         out_path=out, progress=False)
