"""Subprocess vector envs with their default start methods (gymnasium's AsyncVectorEnv: fork on Linux; SB3's
SubprocVecEnv: forkserver), and a bare fork after torch has run parallel work: each in a fresh interpreter under a
timeout, so the deadlock they once had fails the test instead of hanging it (see ddc_env/forking.py)."""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from isolated import run_isolated

# The parent runs torch with 2 intra-op threads whatever the machine, so its OpenMP pool exists before the fork.
PRELUDE = """
import functools, json, sys
import numpy as np, torch
torch.set_num_threads(2)
import gymnasium as gym
import ddc_env
"""

EPISODES = """
def episodes(reset, step, masks, n_envs):
    \"\"\"Random masked actions until every env has finished an episode; how many each finished.\"\"\"
    rng = np.random.default_rng(0)
    reset()
    finished = np.zeros(n_envs, dtype=int)
    for _ in range(40):
        finished += step(np.array([rng.choice(np.flatnonzero(m)) for m in masks()]))
        if (finished >= 1).all():
            break
    return finished.tolist()
"""


@pytest.fixture()
def env_kwargs(synth_teacher, synth_dir, tmp_path) -> str:
    return json.dumps({"teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
                       "fidelity": "zero", "latency": "flops", "device": "cpu",
                       "store": str(tmp_path / "store.sqlite")})


def _run(code: str, tmp_path: Path, *args: str) -> str:
    """Run ``code`` as the main block of a user's script with ``args``; its stdout. SB3's forkserver workers import
    the script, hence ``import ddc_env`` and the registered ids, as a user's script's workers would."""
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + EPISODES + 'if __name__ == "__main__":\n' + textwrap.indent(code, "    "))
    result = run_isolated([sys.executable, str(script), *args], timeout=180, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_gymnasium_async_vector_env_with_the_default_start_method(env_kwargs, tmp_path):
    out = _run("""
envs = gym.make_vec("DDC-LeNet5-MNIST", num_envs=2, vectorization_mode="async", **json.loads(sys.argv[1]))
try:
    print("finished", episodes(lambda: envs.reset(seed=0), lambda a: envs.step(a)[2],
                               lambda: envs.call("action_masks"), 2))
finally:
    envs.close()
""", tmp_path, env_kwargs)
    assert "finished [1, 1]" in out


def test_sb3_subproc_vec_env_with_the_default_start_method(env_kwargs, tmp_path):
    out = _run("""
from stable_baselines3.common.vec_env import SubprocVecEnv
make = functools.partial(gym.make, "DDC-LeNet5-MNIST", **json.loads(sys.argv[1]))
envs = SubprocVecEnv([make, make])
try:
    envs.seed(0)
    print("finished", episodes(envs.reset, lambda a: envs.step(a)[2], lambda: envs.env_method("action_masks"), 2))
finally:
    envs.close()
""", tmp_path, env_kwargs)
    assert "finished [1, 1]" in out


def test_a_forked_child_runs_torch_after_the_parent_did(tmp_path):
    """The root cause in a few lines: a parallel torch op in the parent, then one in a forked child."""
    out = _run("""
import os
x = torch.randn(2000, 2000)
(x @ x).sum()
pid = os.fork()
if pid == 0:
    y = torch.randn(2000, 2000)
    (y @ y + y[torch.arange(1500)].sum()).sum()
    print("child", torch.get_num_threads(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", torch.get_num_threads())
""", tmp_path)
    assert "child 1" in out and "parent 2" in out
