"""SQLite results store: every evaluation keyed by (teacher, data, student spec, fidelity).

The store is the reward cache, the resume point and the source of every report. It is one SQLite
file in WAL mode shared by all processes of a run (e.g. subprocess vector envs): each process opens
its own connection lazily, each write is a single atomic ``INSERT OR IGNORE`` (first writer wins),
so a killed process never leaves a partial row.

Records are stored as strict JSON: non-finite floats (NaN/inf, e.g. the loss of a diverged
student) are written as ``null`` and the record's other fields, including ``status``, are kept.
Numpy/torch scalars and arrays are converted to plain Python values; any other object is a
``TypeError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["SCHEMA_VERSION", "ResultsStore", "StoreError", "make_key"]

SCHEMA_VERSION = 1
_COLUMNS = (
    "key",
    "teacher",
    "data",
    "spec_hash",
    "fidelity",
    "run",
    "method",
    "created",
    "seconds",
    "reward",
    "record",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS evaluations (
        key TEXT PRIMARY KEY,
        teacher TEXT NOT NULL,
        data TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        fidelity TEXT NOT NULL,
        run TEXT,
        method TEXT NOT NULL,
        created REAL NOT NULL,
        seconds REAL NOT NULL,
        reward REAL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS evaluations_lookup ON evaluations (teacher, data, fidelity)",
    "CREATE INDEX IF NOT EXISTS evaluations_run ON evaluations (run)",
)


class StoreError(RuntimeError):
    """The results store file is unusable (not SQLite, corrupt, foreign schema, locked too long)."""


def make_key(teacher: str, data: str, spec_hash: str, fidelity: str) -> str:
    """Cache key of one evaluation: sha256 hex digest of the four parts (unambiguously joined)."""
    parts = (teacher, data, spec_hash, fidelity)
    if not all(isinstance(p, str) for p in parts):
        raise TypeError(f"make_key parts must be strings, got {parts!r}")
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


class ResultsStore:
    """Results store in the SQLite file ``path`` (created with its parent directories if missing).

    Opening validates the file and raises :class:`StoreError` if it is not a results store. The
    object pickles as its path only; a process that did not open the connection (unpickled or
    forked copy) opens its own on first use. ``timeout`` is SQLite's busy timeout in seconds.
    Each thread (e.g. a scorer's completion callbacks) gets its own connection. Use :meth:`close` or a ``with`` block
    to release the calling thread's.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.timeout = timeout
        self._local = threading.local()
        self._connection()

    def __repr__(self) -> str:
        return f"ResultsStore({self.path!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.timeout = state["path"], state["timeout"]
        self._local = threading.local()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this thread's connection (a later call reopens it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = self._local.pid = None

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        with self._guard("read"):
            row = self._connection().execute("SELECT record FROM evaluations WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(
        self,
        key: str,
        record: Mapping[str, Any],
        *,
        teacher: str,
        data: str,
        spec_hash: str,
        fidelity: str,
        run: str | None = None,
        method: str = "env",
        seconds: float = 0.0,
        reward: float | None = None,
    ) -> bool:
        """Store ``record`` under ``key`` unless the key exists; return whether this call inserted it.

        Non-finite floats in ``record`` and a non-finite ``reward`` are stored as null.
        """
        if not isinstance(record, Mapping):
            raise TypeError(f"record must be a mapping, got {type(record).__name__}")
        if not (isinstance(seconds, numbers.Real) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        text = json.dumps(_jsonable(record, "record"), allow_nan=False)
        if reward is not None:
            reward = float(reward) if math.isfinite(reward) else None
        row = (key, teacher, data, spec_hash, fidelity, run, method, time.time(), float(seconds), reward, text)
        with self._guard("write"):
            cursor = self._connection().execute(
                f"INSERT OR IGNORE INTO evaluations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                row,
            )
        return cursor.rowcount == 1

    def query(
        self,
        *,
        teacher: str | None = None,
        data: str | None = None,
        fidelity: str | None = None,
        run: str | None = None,
        method: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows matching every given filter (None = any), in insertion order, ``record`` decoded."""
        where, params = _where(teacher=teacher, data=data, fidelity=fidelity, run=run, method=method)
        with self._guard("read"):
            rows = (
                self._connection()
                .execute(f"SELECT {', '.join(_COLUMNS)} FROM evaluations{where} ORDER BY rowid", params)
                .fetchall()
            )
        out = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
        for row in out:
            row["record"] = json.loads(row["record"])
        return out

    def count(
        self,
        *,
        teacher: str | None = None,
        data: str | None = None,
        fidelity: str | None = None,
        run: str | None = None,
        method: str | None = None,
    ) -> int:
        """Number of rows matching every given filter (None = any)."""
        where, params = _where(teacher=teacher, data=data, fidelity=fidelity, run=run, method=method)
        with self._guard("read"):
            return self._connection().execute(f"SELECT COUNT(*) FROM evaluations{where}", params).fetchone()[0]

    def runs(self) -> list[str]:
        """Distinct non-null run names, in order of first appearance."""
        with self._guard("read"):
            rows = (
                self._connection()
                .execute("SELECT run FROM evaluations WHERE run IS NOT NULL GROUP BY run ORDER BY MIN(rowid)")
                .fetchall()
            )
        return [row[0] for row in rows]

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema checked/created) on first use."""
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        # A connection inherited through fork() belongs to the parent: drop it, never use it.
        self._local.conn = self._local.pid = None
        with self._guard("open"):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                _setup(conn, self.path, self.timeout)
            except BaseException:
                conn.close()
                raise
        self._local.conn, self._local.pid = conn, pid
        return conn

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn SQLite and OS errors into a StoreError naming the file."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"results store {self.path!r}: cannot {action}: {exc}") from exc


def _setup(conn: sqlite3.Connection, path: str, timeout: float) -> None:
    """Switch to WAL and check/create the schema, retrying while another process does the same.

    Switching a new file to WAL can fail with "database is locked" at once, without SQLite's busy
    handler, while other processes open the same new file; retry until ``timeout`` runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    conn.execute("PRAGMA synchronous=NORMAL")
    _init_schema(conn, path)


def _init_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables in one transaction, or check that an existing file is a store of this version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise StoreError(f"{path!r} is an SQLite database but not a results store (tables: {sorted(tables)})")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        (version,) = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        if version != str(SCHEMA_VERSION):
            raise StoreError(f"{path!r} has results store schema version {version}, expected {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _where(**filters: str | None) -> tuple[str, tuple[str, ...]]:
    """SQL WHERE clause and parameters for the filters that are not None."""
    used = {name: value for name, value in filters.items() if value is not None}
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(f"{name} = ?" for name in used), tuple(used.values())


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON data; non-finite floats become None. ``where`` names it in errors."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if callable(getattr(value, "tolist", None)):  # numpy arrays/bools, torch tensors
        return _jsonable(value.tolist(), where)
    raise TypeError(f"{where}: cannot store an object of type {type(value).__name__} as JSON")
