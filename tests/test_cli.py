"""Tests for the ``ddc`` command line (synthetic data, temporary DDC_HOME)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ddc_env.cli import main
from ddc_env.models import sidecar_path
from synthetic import write_synthetic_npz


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DDC_HOME", str(tmp_path / "home"))
    write_synthetic_npz(tmp_path / "data")
    return tmp_path / "data"


def _train(data_dir: Path, *extra: str) -> int:
    return main(["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--data-dir", str(data_dir),
                 "--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--device", "cpu", "--quiet", *extra])


def test_teacher_train_list_info(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(data_dir) == 0
    [pt] = (tmp_path / "home" / "teachers").glob("lenet5_synth_e2_seed0_*.pt")
    assert sidecar_path(pt).is_file()
    assert f"saved {pt}: val_acc" in capsys.readouterr().out

    assert main(["teacher", "list"]) == 0
    out = capsys.readouterr().out
    assert pt.name in out and "synth (4 classes)" in out and "61,218" in out
    assert "2 epochs, batch 32, lr 0.05, seed 0" in out  # the recipe

    assert main(["teacher", "info", pt.stem]) == 0
    out = capsys.readouterr().out
    assert "model: lenet5" in out and "val_acc:" in out and "verified: sha256 matches" in out

    data = bytearray(pt.read_bytes())
    data[-100] ^= 0xFF
    pt.write_bytes(bytes(data))
    assert main(["teacher", "info", str(pt)]) == 2  # only the failure, on stderr: no metadata that looks fine
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "verification FAILED: sha256 mismatch" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_teacher_train_subset_to_explicit_path(data_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine" / "t.pt"
    assert _train(data_dir, "--classes", "hbar,blob", "--max-train", "100", "--seed", "2", "--out", str(out)) == 0
    assert out.is_file() and sidecar_path(out).is_file()
    capsys.readouterr()
    assert main(["teacher", "list", "--dir", str(out.parent)]) == 0
    assert "synth (2 classes, max_train 100)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["teacher", "train", "--model", "resnet99", "--dataset", "synth"], "invalid choice: 'resnet99'"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--classes", "zzz"], "unknown class 'zzz'"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--epochs", "0"], "positive integer"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--lr", "nan"], "positive finite number"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--lr", "inf"], "positive finite number"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--seed", "-1"], "seed must be an integer >= 0"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--device", "gpu"], "device must be 'auto'"),
    (["teacher", "train", "--model", "lenet5", "--dataset", "synth", "--out", "."], "is a directory"),
    (["teacher", "train", "--model", "lenet5", "--spec", "x.json", "--dataset", "synth"], "not allowed with"),
    (["teacher", "train", "--spec", "missing.json", "--dataset", "synth"], "--spec missing.json: [Errno 2]"),
    (["teacher", "info", "missing.pt"], "no checkpoint 'missing.pt'"),
    (["teacher", "list", "--dir", "/nonexistent/dir"], "is not a directory"),
    (["teacher"], "required: ACTION"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, data_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DDC_DATA_DIR", str(data_dir))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["teacher", "train", "--help"]) == 0
    assert "--max-train" in capsys.readouterr().out
