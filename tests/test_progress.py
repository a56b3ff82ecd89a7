"""Progress bars stay out of logs: shown only on a terminal, never with ``progress=False`` / ``--quiet`` or
``TQDM_DISABLE=1``."""
from __future__ import annotations

import os
import subprocess
import sys

from ddc_env.progress import bar_disable


def test_bar_disable_respects_the_caller_and_the_environment(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert bar_disable(True) is None and bar_disable(False) is True  # None: tqdm shows it on a terminal only
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert bar_disable(True) is True
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert bar_disable(True) is None


def test_a_teacher_trained_with_its_output_in_a_log_writes_no_bar(tmp_path):
    code = ("from ddc_env.data import DataConfig; from ddc_env.models import TeacherRecipe, train_teacher; "
            "train_teacher('lenet5', DataConfig('mnist_sample', max_train=256), TeacherRecipe(epochs=1, batch_size=64), "
            f"device='cpu', out_path={str(tmp_path / 't.pt')!r}, progress=True)")
    env = {**os.environ, "DDC_HOME": str(tmp_path)}
    env.pop("TQDM_DISABLE", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "img/s" not in result.stderr and "it/s" not in result.stderr  # stderr is a pipe, not a terminal
