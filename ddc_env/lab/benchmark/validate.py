"""Validating a benchmark's claims: every best student of a ``results.csv`` re-scored with its env."""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ... import registration
from ...arch import ActionCodec, Choice
from ..search import EnvFactory
from .config import RESULTS_CSV

__all__ = ["TOLERANCE", "format_validation", "recorded_choices", "validate_results"]

TOLERANCE = 1e-9  # |claimed - re-scored| allowed for a validated reward or accuracy


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def recorded_choices(row: Mapping[str, str], codec: ActionCodec) -> dict[str, Choice]:
    """The choices of a ``results.csv`` row's student, decoded by ``codec``: its ``choice_tokens`` (lossless), or, in
    rows written before them, its ``choices`` widths and ``kernel_1x1`` flags."""
    recorded = json.loads(row.get("choice_tokens") or "null") or json.loads(row["choices"])
    return codec.decode(recorded, json.loads(row.get("kernel_1x1") or "null"))


def validate_results(path: str | Path) -> dict[str, Any]:
    """Re-score every claimed best student of a ``results.csv`` with its env (a twin: the table or surrogate it was
    scored from, at the claimed training seed) and compare reward, validation accuracy and spec hash; returns the
    counts and one entry per row (``ok``, ``mismatch`` with what differs, or ``skipped`` for a live env, whose
    students would have to be trained again)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results file {path} (a benchmark folder's {RESULTS_CSV})")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = sorted({"env_id", "env_kwargs", "spec_hash", "reward", "val_acc", "choices"} - set(rows[0] if rows
                                                                                             else {}))
    if missing or not rows:
        raise ValueError(f"{path} is not a benchmark results.csv (missing columns {missing} or no rows)")
    envs: dict[str, Any] = {}
    checked = []
    try:
        for row in rows:
            entry = {"agent": row.get("agent"), "seed": row.get("seed"), "spec_hash": row["spec_hash"]}
            env_id, kwargs = row["env_id"], json.loads(row["env_kwargs"] or "{}")
            if registration.is_live(env_id):
                checked.append({**entry, "status": "skipped", "why": "a live env: re-scoring trains the student"})
                continue
            if row.get("train_seed") not in (None, ""):
                seed = int(float(row["train_seed"]))
                kwargs = {**kwargs, "train_seed": "mean" if seed < 0 else seed}
            key = json.dumps([env_id, kwargs], sort_keys=True)
            if key not in envs:
                envs[key] = EnvFactory(env_id, kwargs)()
            env = envs[key].unwrapped
            record = env.evaluate_choices(recorded_choices(row, env.task.codec))
            problems = [f"spec hash {record['spec_hash']}" if record["spec_hash"] != row["spec_hash"] else ""]
            for name in ("reward", "val_acc"):
                claimed = _number(row[name])
                if claimed is None or not math.isclose(record[name], claimed, rel_tol=0.0, abs_tol=TOLERANCE):
                    problems.append(f"{name} {claimed} claimed, {record[name]} re-scored")
            problems = [p for p in problems if p]
            checked.append({**entry, "status": "mismatch" if problems else "ok", "why": "; ".join(problems)})
    finally:
        for env in envs.values():
            env.close()
    counts = {status: sum(c["status"] == status for c in checked) for status in ("ok", "mismatch", "skipped")}
    return {"file": str(path), **counts, "rows": checked}



def format_validation(report: Mapping[str, Any]) -> str:
    """A :func:`validate_results` report as text: one line per row (status, agent, seed, spec hash, what differs),
    then the counts."""
    lines = []
    for row in report["rows"]:
        what = f"{row['agent']} seed {row['seed']} {row['spec_hash']}"
        lines.append(f"{row['status']:<8} {what}" + (f": {row['why']}" if row["why"] else ""))
    lines.append(f"{report['file']}: {report['ok']} ok, {report['mismatch']} mismatches, {report['skipped']} skipped")
    return "\n".join(lines)
