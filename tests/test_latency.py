"""The reward's time: the per-unit latency model (one table per device, protocol and batch, first writer wins, the
same numbers in every process) and paired measurement of student and teacher."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ddc_env.arch import apply_decisions, build, uniform_choices
from ddc_env.latency import (LatencyModel, LatencyProtocol, measure_interleaved, measure_paired, timing_copy,
                             unit_key)
from ddc_env.models import lenet5

TEACHER = lenet5(num_classes=4, in_channels=1, input_size=(28, 28))
STUDENT = apply_decisions(TEACHER, uniform_choices(TEACHER, 0.25), channel_round=2, min_channels=2)
PROTOCOL = LatencyProtocol(batch_size=64, warmup=2, rounds=5)


def _ratio(path: Path) -> float:
    model = LatencyModel(PROTOCOL, path=path)
    return model.predict_ms(STUDENT) / model.predict_ms(TEACHER)


def test_every_process_reads_the_same_time_from_the_table(tmp_path: Path) -> None:
    """A fresh process reading the table gets exactly this process's ratio (a time measured once per process used
    to move a reward 50x between runs)."""
    path = tmp_path / "units.sqlite"
    here = _ratio(path)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_latency import _ratio; "
            "from pathlib import Path; print(json.dumps(_ratio(Path(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(path)], capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout) == here and 0.0 < here < 1.0


def test_the_first_measurement_of_a_unit_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "units.sqlite"
    first = LatencyModel(PROTOCOL, path=path)
    teacher_ms = first.predict_ms(TEACHER)
    monkeypatch.setattr(LatencyModel, "_measure", lambda self, unit, shape: 1e6)  # a later, different measurement
    assert LatencyModel(PROTOCOL, path=path).predict_ms(TEACHER) == teacher_ms  # read, not measured again
    other_batch = LatencyModel(LatencyProtocol(batch_size=32, warmup=2, rounds=5), path=path)
    assert other_batch.predict_ms(TEACHER) == 1e6 * len(TEACHER.units)  # its own rows: measured (here: faked)
    assert other_batch.key() != first.key()


def test_a_fixed_table_measures_nothing(tmp_path: Path) -> None:
    entries = LatencyModel(PROTOCOL, path=tmp_path / "units.sqlite").entries([TEACHER])
    fixed = LatencyModel(PROTOCOL, entries=entries, device_name="table")
    assert fixed.predict_ms(TEACHER) == pytest.approx(sum(entries.values()))
    row = STUDENT.shapes()[0]  # a narrower conv1: a unit the table has not seen
    assert unit_key(row.unit, row.inp) not in entries
    with pytest.raises(KeyError, match="no latency entry"):
        fixed.predict_ms(STUDENT)


def test_paired_measurement_keeps_medians_and_spreads() -> None:
    paired = measure_paired(timing_copy(build(STUDENT)), timing_copy(build(TEACHER)), (1, 28, 28), PROTOCOL)
    assert paired.student_ms > 0 and paired.teacher_ms > 0 and paired.rounds == PROTOCOL.rounds
    assert paired.student_spread_ms >= 0 and paired.teacher_spread_ms >= 0
    assert paired.ratio == pytest.approx(paired.student_ms / paired.teacher_ms) and paired.ratio < 1.0


def test_interleaved_measurement_times_every_net_in_the_same_rounds() -> None:
    nets = [timing_copy(build(TEACHER)), timing_copy(build(STUDENT)), timing_copy(build(TEACHER))]
    (teacher_ms, _), (student_ms, spread), (again_ms, _) = measure_interleaved(nets, (1, 28, 28), PROTOCOL)
    assert 0 < student_ms < min(teacher_ms, again_ms) and spread >= 0
    (teacher_ms, _), (student_ms, _), _ = measure_interleaved(nets, (1, 28, 28), PROTOCOL, warm_calls=1)
    assert 0 < student_ms < teacher_ms
    with pytest.raises(ValueError, match="warm_calls must be an integer >= 0"):
        measure_interleaved(nets, (1, 28, 28), PROTOCOL, warm_calls=-1)


def test_how_a_unit_is_timed_is_part_of_the_table_key(tmp_path: Path) -> None:
    """Units timed with other rounds are other rows: a table never mixes protocol versions or unit timings."""
    path = tmp_path / "units.sqlite"
    short = LatencyModel(PROTOCOL, path=path)
    long = LatencyModel(LatencyProtocol(batch_size=64, warmup=2, rounds=5, unit_rounds=3, unit_round_ms=4.0),
                        path=path)
    assert short.key() != long.key() and "v4" in short.signature and "unit rounds 3 x 4 ms" in long.signature
    assert short.describe()["unit_rounds"] == 120 and long.describe()["unit_round_ms"] == 4.0
    short.predict_ms(TEACHER), long.predict_ms(TEACHER)
    with sqlite3.connect(path) as conn:
        signatures = {row[0] for row in conn.execute("SELECT signature FROM units")}
    assert signatures == {short.signature, long.signature}


def test_a_unit_timed_in_a_slow_phase_is_timed_again(tmp_path: Path) -> None:
    """A unit's attempt counts only when the reference conv read within the guard of its fastest known time just
    before and after it; otherwise it is repeated (up to unit_attempts) and the fastest attempt kept. Here the cache's
    fastest reference reading is then made impossibly fast, so every attempt looks slow."""
    protocol = LatencyProtocol(batch_size=64, warmup=2, rounds=5, unit_attempts=2)
    path = tmp_path / "units.sqlite"
    calm = LatencyModel(protocol, path=path)
    calm.predict_ms(STUDENT)
    assert set(calm.attempts) == {unit_key(r.unit, r.inp) for r in STUDENT.shapes()}
    assert set(calm.attempts.values()) <= {1, 2}
    with sqlite3.connect(path) as conn:
        (floor,), = conn.execute("SELECT ms FROM reference WHERE signature = ?", (calm.signature,))
        conn.execute("UPDATE reference SET ms = ? WHERE signature = ?", (floor / 100, calm.signature))
    slow = LatencyModel(protocol, path=path)
    assert 0 < slow.predict_ms(STUDENT) < slow.predict_ms(TEACHER)  # the student's units are read, not measured
    assert set(slow.attempts) == {unit_key(r.unit, r.inp) for r in TEACHER.shapes()} - set(calm.attempts)
    assert set(slow.attempts.values()) == {2}
    with sqlite3.connect(path) as conn:  # slower readings never raise the fastest known one
        assert conn.execute("SELECT ms FROM reference").fetchall() == [(floor / 100,)]


@pytest.mark.parametrize("field, value, message", [
    ("unit_rounds", 0, "latency unit_rounds must be a positive integer, got 0"),
    ("unit_rounds", 2.5, "latency unit_rounds must be a positive integer, got 2.5"),
    ("unit_round_ms", 0.0, "latency unit_round_ms must be a positive number, got 0.0"),
    ("unit_round_ms", float("nan"), "latency unit_round_ms must be a positive number, got nan"),
    ("unit_round_ms", "fast", "latency unit_round_ms must be a positive number, got 'fast'"),
    ("unit_attempts", 0, "latency unit_attempts must be a positive integer, got 0"),
    ("guard", -0.1, "latency guard must be a positive number, got -0.1"),
    ("guard", float("inf"), "latency guard must be a positive number, got inf"),
])
def test_bad_unit_timing_is_a_clear_error(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LatencyProtocol(**{field: value})
