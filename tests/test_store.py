"""Tests for ddc_env.store."""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import threading
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ddc_env.store import SCHEMA_VERSION, ResultsStore, StoreError, make_key

SPAWN = multiprocessing.get_context("spawn")
WHERE = {"teacher": "resnet18", "data": "cifar10", "spec_hash": "abc", "fidelity": "smoke"}


def record(i: int = 0, **extra: Any) -> dict[str, Any]:
    """A small metrics record."""
    return {"status": "ok", "val_acc": 0.5 + i / 1000, "params": 1000 + i, "spec": {"units": [i, "conv"]}, **extra}


def _put_rows(path: str, worker: int, rows: int, barrier: Any) -> None:
    """Subprocess: wait for the others, then open the store and insert ``rows`` distinct rows."""
    barrier.wait(timeout=60)
    store = ResultsStore(path)
    for j in range(rows):
        key = f"w{worker}-{j}"
        assert store.put(key, record(j, worker=worker), **WHERE, run=f"run{worker}")
    store.close()


def _die_mid_transaction(path: str) -> None:
    """Subprocess: begin a transaction, insert a row, and die before committing."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO evaluations VALUES ('doomed', 't', 'd', 's', 'f', NULL, 'env', 0, 0, NULL, '{}')")
    os._exit(1)


def _put_forever(path: str, started: Any) -> None:
    """Subprocess: insert rows until killed."""
    store = ResultsStore(path)
    for j in range(10**9):
        store.put(f"k{j}", record(j, padding="x" * 2000), **WHERE)
        started.set()


def test_make_key() -> None:
    key = make_key("resnet18", "cifar10", "abc", "smoke")
    assert key == make_key("resnet18", "cifar10", "abc", "smoke")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != make_key("resnet18", "cifar10", "abc", "paper")
    # the join is unambiguous
    assert make_key("a|b", "c", "d", "e") != make_key("a", "b|c", "d", "e")
    with pytest.raises(TypeError):
        make_key("a", "b", "c", 1)  # type: ignore[arg-type]


def test_round_trip_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "results.db"
    with ResultsStore(path) as store:
        key = make_key(**WHERE)
        assert store.get(key) is None
        assert store.put(key, record(1), **WHERE, run="r1", method="baseline:l1_prune", seconds=2.5, reward=0.7)
        assert store.get(key) == record(1)
        (row,) = store.query()
        assert {k: row[k] for k in ("key", "run", "method", "seconds", "reward")} == {
            "key": key,
            "run": "r1",
            "method": "baseline:l1_prune",
            "seconds": 2.5,
            "reward": 0.7,
        }
        assert row["record"] == record(1) and row["created"] <= time.time()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"evaluations_lookup", "evaluations_run"} <= indexes
    conn.close()
    # reopening an existing store keeps the data
    assert ResultsStore(path).get(key) == record(1)


def test_duplicate_put_keeps_first(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    assert store.put("k", record(1), **WHERE, reward=1.0)
    assert not store.put("k", record(2), **WHERE, reward=2.0)
    assert store.get("k") == record(1)
    assert store.count() == 1 and store.query()[0]["reward"] == 1.0


def test_query_count_and_runs(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    rows = [
        ("a", "resnet18", "cifar10", "smoke", "run2", "env"),
        ("b", "resnet18", "cifar10", "paper", "run1", "env"),
        ("c", "vgg11", "cifar10", "smoke", "run2", "baseline:kd"),
        ("d", "resnet18", "vehicles", "smoke", None, "env"),
    ]
    for key, teacher, data, fidelity, run, method in rows:
        where = {"teacher": teacher, "data": data, "spec_hash": key, "fidelity": fidelity}
        store.put(key, {"key": key}, **where, run=run, method=method)
    assert [r["key"] for r in store.query()] == ["a", "b", "c", "d"]
    assert [r["key"] for r in store.query(teacher="resnet18")] == ["a", "b", "d"]
    assert [r["key"] for r in store.query(teacher="resnet18", data="cifar10", fidelity="smoke")] == ["a"]
    assert [r["key"] for r in store.query(run="run2")] == ["a", "c"]
    assert [r["record"] for r in store.query(method="baseline:kd")] == [{"key": "c"}]
    assert store.query(teacher="lenet5") == []
    assert store.count() == 4 and store.count(fidelity="smoke") == 3 and store.count(run="run1", data="x") == 0
    assert store.runs() == ["run2", "run1"]


def test_non_finite_floats_become_null(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    bad = {"status": "diverged", "loss": math.nan, "history": [1.0, math.inf, -math.inf], "acc": np.float32(0.25)}
    assert store.put("k", bad, **WHERE, reward=math.nan)
    assert store.get("k") == {"status": "diverged", "loss": None, "history": [1.0, None, None], "acc": 0.25}
    assert store.query()[0]["reward"] is None
    raw = sqlite3.connect(tmp_path / "r.db").execute("SELECT record FROM evaluations").fetchone()[0]
    assert "NaN" not in raw and "Infinity" not in raw


def test_numpy_values_and_bad_objects(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    assert store.put("np", {"n": np.int64(3), "flag": np.bool_(True), "a": np.array([1.5, np.nan])}, **WHERE)
    assert store.get("np") == {"n": 3, "flag": True, "a": [1.5, None]}
    with pytest.raises(TypeError, match=r"record\['spec'\]\[1\]: cannot store an object of type object"):
        store.put("bad", {"spec": [1, object()]}, **WHERE)
    with pytest.raises(TypeError, match="keys must be strings"):
        store.put("bad", {1: 2}, **WHERE)
    with pytest.raises(ValueError, match="seconds"):
        store.put("bad", {}, **WHERE, seconds=-1.0)
    assert store.get("bad") is None and store.count() == 1


def test_pickle_round_trip(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    store.put("k1", record(1), **WHERE)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path
    assert clone.get("k1") == record(1)
    assert clone.put("k2", record(2), **WHERE)
    assert store.get("k2") == record(2)


def test_each_thread_writes_through_its_own_connection(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            store.put(f"t{i}", record(i), **WHERE)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.count() == 4


def test_reopens_connection_in_new_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultsStore(tmp_path / "r.db")
    first = store._connection()
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as seen by a forked child
    assert store._connection() is not first
    assert store.put("k", record(), **WHERE) and store.get("k") == record()
    first.close()


def test_close_and_reopen(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    store.put("k", record(), **WHERE)
    store.close()
    store.close()
    assert store.get("k") == record()


def test_concurrent_writers(tmp_path: Path) -> None:
    # the processes also race to create the new file
    path = str(tmp_path / "new" / "r.db")
    workers, rows = 4, 50
    barrier = SPAWN.Barrier(workers)
    procs = [SPAWN.Process(target=_put_rows, args=(path, w, rows, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * workers
    store = ResultsStore(path)
    assert store.count() == workers * rows
    assert sorted(store.runs()) == [f"run{w}" for w in range(workers)]
    for w in range(workers):
        assert store.get(f"w{w}-{rows - 1}") == record(rows - 1, worker=w)


def test_killed_mid_transaction_leaves_no_row(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    store = ResultsStore(path)
    store.put("kept", record(), **WHERE)
    proc = SPAWN.Process(target=_die_mid_transaction, args=(path,))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 1
    assert store.get("doomed") is None and store.count() == 1
    assert store.put("doomed", record(5), **WHERE)
    assert ResultsStore(path).get("doomed") == record(5)


def test_sigkill_during_writes_leaves_complete_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    ResultsStore(path).close()
    started = SPAWN.Event()
    proc = SPAWN.Process(target=_put_forever, args=(path, started))
    proc.start()
    assert started.wait(timeout=60)
    time.sleep(0.2)
    proc.kill()
    proc.join(timeout=60)
    store = ResultsStore(path)
    rows = store.query()
    assert rows and all(r["record"] == record(int(r["key"][1:]), padding="x" * 2000) for r in rows)
    assert store.put("after", record(), **WHERE)


def test_garbage_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"garbage\.db"):
        ResultsStore(path)


def test_foreign_sqlite_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a results store"):
        ResultsStore(path)


def test_other_schema_version_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    ResultsStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="version 999"):
        ResultsStore(path)


def test_directory_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=re.escape(str(tmp_path))):
        ResultsStore(tmp_path)
