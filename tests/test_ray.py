"""The Ray backend (ddc_env.scoring.ray) on a real local Ray instance of 2 CPUs: records equal the local scorer's,
a student whose worker is killed is retried and stored once, a repeated student is a hit whichever client asks,
the custom agents play the same episodes concurrently, ``ddc search --backend ray`` (SB3 subprocess envs sharing the
pool) records its backend and resumes on another, and a bad address or a lost pool is a one-line error.

Synthetic LeNet-5 teacher (tests/conftest.py); students train with one torch thread on both sides (a KD result
depends on the thread count) for a few epochs, long enough to kill a worker in the middle of one.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
import yaml

ray = pytest.importorskip("ray")

import ddc_env  # noqa: E402,F401  (registers the ids)
from ddc_env.arch import REMOVE, uniform_choices  # noqa: E402
from ddc_env.cli import main  # noqa: E402
from ddc_env.lab.runs import SearchLog  # noqa: E402
from ddc_env.scoring import CachedScorer, LiveScorer  # noqa: E402
from ddc_env.scoring.ray import RayScorer  # noqa: E402
from ddc_env.store import ResultsStore  # noqa: E402
from ddc_env.tables import BenchTable  # noqa: E402
from ddc_env.task import TaskConfig, load_task  # noqa: E402

FIDELITY = {"name": "smoke", "epochs": 6}  # about half a second per student here
LENET = {"channel_round": 2, "min_channels": 2}
SCORING = {"latency": "flops", "device": "cpu"}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance for this module. Token authentication is off for it (the driver and the search's
    subprocess envs would otherwise read the token from ~/.ray/auth_token, which another Ray instance on the machine
    may have rewritten: seen in the full suite, never with this module alone)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False)
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def config(synth_teacher, synth_dir) -> TaskConfig:
    return TaskConfig(model="lenet5", teacher=str(synth_teacher.path), dataset="synth", data_dir=str(synth_dir),
                      **LENET)


@pytest.fixture(scope="module")
def pool(cluster, config):
    """Two workers of half a CPU each: the other CPU stays free for the pool ``ddc search`` starts."""
    with RayScorer(config, FIDELITY, **SCORING, threads=1, workers=2, num_cpus=0.5) as scorer:
        yield scorer


@pytest.fixture(scope="module")
def local(config) -> LiveScorer:
    return LiveScorer(load_task(config, progress=False), FIDELITY, **SCORING, threads=1)


def test_records_equal_the_local_scorers(pool, local):
    task = local.task
    assert pool.task.key() == task.key() and pool.key == local.key and pool.time_term == "flops"
    assert pool.teacher_record() == local.teacher_record()
    specs = [task.student_spec(uniform_choices(task.teacher_spec, 0.5)),
             task.student_spec({"conv2": 0.25, "fc1": REMOVE})]
    for remote, here in zip(pool.score_many(specs), (local.score(s) for s in specs)):
        assert remote["status"] == here["status"] == "ok" and not remote["cache_hit"]
        for key in ("val_acc", "params", "flops", "size_bytes", "spec_hash", "acc_ratio", "param_ratio",
                    "flop_ratio", "teacher_val_acc", "final_loss"):
            assert remote[key] == here[key], key
    described = pool.describe()
    assert described["backend"] == "RayScorer" and described["ray"]["workers"] == 2
    assert described["fidelity_fields"]["epochs"] == FIDELITY["epochs"]


def test_a_repeated_student_is_a_hit_whichever_client_asks(pool, tmp_path):
    """Two clients (the owner and an unpickled copy, each behind its own cache over one store) ask for the same
    new student at once: one evaluation, one row, the other a hit; a later ask from a fresh cache is a store hit."""
    copy = pickle.loads(pickle.dumps(pool))
    assert len(pickle.dumps(pool)) < 20_000 and copy.pool == pool.pool and copy.key == pool.key
    spec = pool.task.student_spec(uniform_choices(pool.task.teacher_spec, 0.25))
    a = CachedScorer(pool, ResultsStore(tmp_path / "r.sqlite"), run="a")
    b = CachedScorer(copy, ResultsStore(tmp_path / "r.sqlite"), run="b")
    first, second = a.submit(spec), b.submit(spec)
    records = [first.result(timeout=120), second.result(timeout=120)]
    assert sorted(r["cache_hit"] for r in records) == [False, True]
    assert records[0]["val_acc"] == records[1]["val_acc"] and a.store.count() == 1
    again = CachedScorer(pickle.loads(pickle.dumps(pool)), ResultsStore(tmp_path / "r.sqlite")).score(spec)
    assert again["cache_hit"] and again["simulated_seconds"] == 0.0


def test_a_killed_worker_loses_nothing(pool, local, tmp_path):
    """The process of the worker scoring a student is killed: the student is scored again on a live worker, the
    store gets one row (the local scorer's record), the pool goes on and the worker restarts."""
    store = ResultsStore(tmp_path / "r.sqlite")
    cached = CachedScorer(pool, store)
    spec = pool.task.student_spec({"conv1": 0.5, "fc2": REMOVE})
    pending = cached.submit(spec)
    deadline = time.monotonic() + 60
    while not (busy := [w for w in pool.status() if w["state"] == "busy"]):
        assert time.monotonic() < deadline and not pending.done()
        time.sleep(0.01)
    os.kill(busy[0]["pid"], signal.SIGKILL)
    record = pending.result(timeout=120)
    assert record["status"] == "ok" and not record["cache_hit"] and store.count() == 1
    assert record["val_acc"] == local.score(spec)["val_acc"]
    # the search goes on, and the killed worker comes back with a new process
    assert cached.score(pool.task.student_spec({"fc1": 0.5}))["status"] == "ok" and store.count() == 2
    while (row := pool.status()[busy[0]["index"]])["pid"] == busy[0]["pid"] or row["state"] != "idle":
        assert row["state"] != "dead" and time.monotonic() < deadline + 120
        time.sleep(0.5)


class _Log(SearchLog):
    def __init__(self, total: int) -> None:
        super().__init__(None, total, progress=False)
        self.seen: list[tuple[float, str, bool, float]] = []

    def record(self, reward: float, info: dict[str, Any]) -> None:
        super().record(reward, info)
        self.seen.append((reward, info["spec_hash"], info["cache_hit"], info["val_acc"]))


def test_reinforce_plays_the_same_episodes_on_the_pool(pool, synth_teacher, synth_dir, tmp_path):
    """REINFORCE's rollouts scored concurrently on the pool: the episodes of the local sequential search."""
    from ddc_env.agents import reinforce

    kwargs = {"teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
              "fidelity": FIDELITY, "reward": "n2n", **SCORING, **LENET}
    logs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the local env trains with torch's setting: one thread, as the workers
    try:
        for scorer in (None, CachedScorer(pool)):
            log = _Log(6)
            env_fn = (lambda: gym.make("DDC-LeNet5-MNIST", **kwargs)) if scorer is None else (
                lambda s=scorer: gym.make("DDC-LeNet5-MNIST", scorer=s, **kwargs))
            reinforce.run(env_fn, episodes=6, log=log, seed=1, rollouts=3, schedule="joint")
            logs.append(log.seen)
    finally:
        torch.set_num_threads(threads)
    assert logs[0] == logs[1] and len(logs[0]) == 6


def _search_config(tmp_path: Path, synth_teacher, synth_dir) -> Path:
    config = {"env_id": "DDC-LeNet5-MNIST",
              "env_kwargs": {"teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
                             "fidelity": "smoke", **SCORING},
              "agent": "ppo", "n_envs": 2, "episodes": 4, "seed": 0}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_search_with_the_ray_backend_records_it(pool, tmp_path, synth_teacher, synth_dir, capsys):
    """PPO on two subprocess envs sharing one pool (started by the search on the free CPU); config and summary
    record the backend (tests/test_search.py resumes a run on another backend); the best student's weights come
    from a worker."""
    config, out = _search_config(tmp_path, synth_teacher, synth_dir), tmp_path / "run"
    assert main(["search", "--config", str(config), "--out", str(out), "--quiet", "--backend", "ray", "--workers",
                 "1", "--cpus-per-worker", "1"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["backend"] == {"name": "ray", "address": None, "workers": 1, "cpus_per_worker": 1.0,
                                "gpus_per_worker": 0.0}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scorer"]["backend"] == "RayScorer" and summary["scorer"]["ray"]["workers"] == 1
    assert summary["teacher"]["path"] == str(synth_teacher.path)  # from the workers: the driver loads no teacher
    assert summary["episodes"] >= 4 and summary["evaluations"] == ResultsStore(out / "results.sqlite").count()
    assert (out / "best_student.pt").is_file()
    deadline = time.monotonic() + 60  # the search's pool is gone (its CPU comes back), the module's still runs
    while ray.available_resources().get("CPU") != 1.0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    capsys.readouterr()


def test_bad_backend_input_is_one_line_before_any_folder(cluster, config, tmp_path, synth_teacher, synth_dir,
                                                           capsys):
    with pytest.raises(ValueError, match=r"no Ray cluster answers at 127\.0\.0\.1:1 .*ray start --head"):
        RayScorer(config, FIDELITY, **SCORING, address="127.0.0.1:1")
    with pytest.raises(ValueError, match="pass teacher='auto' or a checkpoint path"):
        RayScorer(TaskConfig(teacher=load_task(config, progress=False).teacher))
    search = _search_config(tmp_path, synth_teacher, synth_dir)
    for argv, message in (
            (["--backend", "ray", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
            (["--workers", "2"], "--workers only apply to the ray backend"),
            (["--backend", "ray", "--workers", "9"], "9 worker(s) of 1 CPU each do not fit")):
        assert main(["search", "--config", str(search), "--out", str(tmp_path / "run"), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_lost_pool_is_a_clear_error(pool, tmp_path):
    """(Last: it stops the module's pool.) A client of a pool that is gone gets one line naming the pool and the
    address; the finished evaluations stay in the store; only the owner can shut a pool down."""
    copy = pickle.loads(pickle.dumps(pool))
    store = ResultsStore(tmp_path / "r.sqlite")
    spec = pool.task.student_spec({"fc1": 0.25})
    CachedScorer(copy, store).score(spec)
    with pytest.raises(RuntimeError, match="only the process that started"):
        copy.shutdown()
    pool.shutdown()
    with pytest.raises(RuntimeError, match=rf"the Ray pool {pool.pool} at {pool.address} is gone"):
        CachedScorer(copy, store).score(pool.task.student_spec({"fc1": 0.5}))
    with pytest.raises(RuntimeError, match=rf"no Ray pool {pool.pool} at {pool.address}"):
        pickle.loads(pickle.dumps(pool)).score(spec)
    assert store.count() == 1


def test_table_build_on_the_pool_equals_the_local_build(cluster, tmp_path, synth_teacher, synth_dir, capsys):
    """``ddc table build --backend ray``: the driver writes every record the workers return; the table's rows are
    those of a build by this process's own scorers (same accuracy, costs and latency-table time)."""
    env = ["--env", "DDC-LeNet5-MNIST", "--set", f"teacher={synth_teacher.path}", "dataset=synth",
           f"data_dir={synth_dir}", "channel_round=2", "min_channels=2", "device=cpu", "--fidelity", "zero=4",
           "--quiet"]
    tables = {}
    for name, backend in (("ray", ["--backend", "ray", "--workers", "2", "--cpus-per-worker", "0.5"]), ("local", [])):
        out, store = tmp_path / f"{name}.json.gz", tmp_path / f"{name}.sqlite"
        assert main(["table", "build", "synth", *env, "--out", str(out), "--store", str(store), *backend]) == 0
        tables[name] = BenchTable.load(out)
        assert ResultsStore(store).count() == 4  # the driver wrote each student once
    capsys.readouterr()
    fields = ("spec_hash", "status", "val_acc", "params", "flops", "size_bytes", "latency_ms")
    assert [[row[k] for k in fields] for row in tables["ray"].rows] == \
        [[row[k] for k in fields] for row in tables["local"].rows]
