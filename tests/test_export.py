"""`ddc export` (ddc_env.lab.export): a smoke search's best student, another evaluated student and a uniform
baseline's final models to TorchScript and ONNX, checked against the torch models with onnxruntime. Exported models
take float images in [0, 1] and normalise them themselves; their metadata says so."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import yaml

from ddc_env.arch import NetSpec
from ddc_env.cli import main
from ddc_env.data import normalize
from ddc_env.lab.baseline import BaselineConfig, run_baseline
from ddc_env.lab.report import load_live, load_model, read_run
from ddc_env.lab.search import SearchConfig, run_search
from ddc_env.store import ResultsStore

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")  # the tests load TorchScript files


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_teacher, synth_dir) -> tuple[Path, Path]:
    """(search run folder, baseline run folder) at smoke fidelity."""
    root = tmp_path_factory.mktemp("export_runs")
    env_kwargs = dict(model="lenet5", teacher=str(synth_teacher.path), dataset="synth", data_dir=str(synth_dir),
                      fidelity="smoke", latency="flops", device="cpu")
    run_search(SearchConfig(env_id="DDC-LeNet5-MNIST", env_kwargs=env_kwargs, agent="random", episodes=4),
               root / "search", progress=False)
    run_baseline(BaselineConfig(baseline="uniform", env_id="DDC-LeNet5-MNIST", env_kwargs=env_kwargs,
                                kwargs={"widths": [0.5, 0.25]}), root / "baseline", progress=False)
    return root / "search", root / "baseline"


def _inputs(n: int = 5) -> torch.Tensor:
    """Images in [0, 1] (pixels / 255), a batch of another size than the export's examples (the batch axis must be
    dynamic)."""
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(1)).float() / 255


def _expected(net: torch.nn.Module, x: torch.Tensor, teacher) -> torch.Tensor:
    """The torch model's logits for images ``x`` in [0, 1], normalised as the env's data pipeline does."""
    with torch.no_grad():
        return net(normalize((x * 255).round().to(torch.uint8), teacher.mean, teacher.std))


def _onnx_outputs(path: Path, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def test_best_student_to_torchscript_and_onnx(runs, tmp_path, capsys, synth_teacher):
    search, _ = runs
    net, _ = load_model(search, {"spec": "best_student.json", "weights": "best_student.pt"})
    x = _inputs()
    expected = _expected(net, x, synth_teacher)

    assert main(["export", str(search), "--out", str(tmp_path / "best.ts")]) == 0
    printed = capsys.readouterr().out
    assert f"to {tmp_path / 'best.ts'} (torchscript); max abs difference" in printed
    assert "on 64 validation images" in printed
    assert torch.allclose(torch.jit.load(str(tmp_path / "best.ts"))(x), expected, atol=1e-5)

    assert main(["export", str(search), "--format", "onnx"]) == 0  # default: RUN_DIR/export/
    assert "(onnx); max abs difference" in capsys.readouterr().out
    np.testing.assert_allclose(_onnx_outputs(search / "export" / "best_student.onnx", x), expected.numpy(),
                               atol=1e-4, rtol=1e-3)


def test_baseline_results_by_label(runs, tmp_path, capsys, synth_teacher):
    _, baseline = runs
    results = json.loads((baseline / "summary.json").read_text())["results"]
    x = _inputs(3)
    for label, argv in (("uniform 0.5", []), ("uniform 0.25", ["--label", "uniform 0.25"])):  # default: the first
        out = tmp_path / f"{label}.onnx"
        assert main(["export", str(baseline), "--format", "onnx", "--out", str(out), *argv]) == 0
        assert f"uniform {label.split()[-1]} (baseline)" in capsys.readouterr().out
        model = next(r["model"] for r in results if r["label"] == label)
        net, _ = load_model(baseline, model)
        np.testing.assert_allclose(_onnx_outputs(out, x), _expected(net, x, synth_teacher).numpy(), atol=1e-4,
                                   rtol=1e-3)


def test_a_torchscript_final_model_exports_too(runs, tmp_path, capsys, synth_teacher):
    """A baseline whose final model is TorchScript (e.g. an int8 model) is re-saved and exported to ONNX."""
    _, baseline = runs
    run = shutil.copytree(baseline, tmp_path / "scripted")
    summary = json.loads((run / "summary.json").read_text())
    net, _ = load_model(run, summary["results"][0]["model"])
    torch.jit.save(torch.jit.trace(net, _inputs(2)), str(run / "models" / "scripted.ts"))
    summary["results"][0]["model"] = {"torchscript": "models/scripted.ts"}
    (run / "summary.json").write_text(json.dumps(summary))
    x = _inputs()
    expected = _expected(net, x, synth_teacher)
    assert main(["export", str(run), "--out", str(tmp_path / "again.ts")]) == 0
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "scripted.onnx")]) == 0
    capsys.readouterr()
    assert torch.allclose(torch.jit.load(str(tmp_path / "again.ts"))(x), expected, atol=1e-5)
    np.testing.assert_allclose(_onnx_outputs(tmp_path / "scripted.onnx", x), expected.numpy(), atol=1e-4,
                               rtol=1e-3)


def test_any_evaluated_student_by_spec_hash_is_trained_again(runs, tmp_path, capsys, synth_teacher):
    search, _ = runs
    best = json.loads((search / "summary.json").read_text())["best_student"]["spec_hash"]
    with ResultsStore(search / "results.sqlite") as store:
        row = next(r for r in store.query() if r["record"]["status"] == "ok" and r["spec_hash"] != best)
    out = tmp_path / "other.ts"
    assert main(["export", str(search), "--spec", row["spec_hash"][:10], "--out", str(out)]) == 0
    assert f"student {row['spec_hash']} of" in capsys.readouterr().out

    _, distiller = load_live(read_run(search))  # the export is the evaluated student: trained again the same way
    student, _ = distiller.train_student(NetSpec.from_dict(row["record"]["spec"]))
    assert distiller.accuracy(student) == row["record"]["val_acc"]
    x = _inputs()
    expected = _expected(student.float().to(memory_format=torch.contiguous_format), x, synth_teacher)
    assert torch.allclose(torch.jit.load(str(out))(x), expected, atol=1e-4)


def test_exported_files_say_what_they_take(runs, tmp_path, capsys, synth_teacher):
    search, _ = runs
    assert main(["export", str(search), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", str(search), "--out", str(tmp_path / "m.ts")]) == 0
    capsys.readouterr()
    onnx_props = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                              providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    extra = {"ddc_env.json": ""}
    torch.jit.load(str(tmp_path / "m.ts"), _extra_files=extra)
    for props in (onnx_props, json.loads(extra["ddc_env.json"])):
        assert props["input"].startswith("float32 images in [0, 1], N x C x H x W")
        assert json.loads(props["normalize_mean"]) == pytest.approx(synth_teacher.mean)
        assert json.loads(props["normalize_std"]) == pytest.approx(synth_teacher.std)
        assert json.loads(props["class_names"]) == ["hbar", "vbar", "blob", "plus"]


def test_without_the_data_the_teachers_sidecar_gives_the_normalisation(runs, tmp_path, capsys, synth_teacher):
    search, _ = runs
    run = shutil.copytree(search, tmp_path / "elsewhere")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["env_kwargs"]["data_dir"] = str(tmp_path / "no-data-here")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    assert "on random images (data not available" in capsys.readouterr().out
    net, _ = load_model(run, {"spec": "best_student.json", "weights": "best_student.pt"})
    x = _inputs()
    np.testing.assert_allclose(_onnx_outputs(out, x), _expected(net, x, synth_teacher).numpy(), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("which, argv, message", [
    ("baseline", ["--label", "uniform 0.9"], "no final model labelled 'uniform 0.9' in"),
    ("search", ["--spec", "zzzz"], "--spec 'zzzz' matches no valid student of"),
    ("search", ["--label", "uniform 0.5"], "--label picks a baseline's final model, but"),
    ("baseline", ["--spec", "ab"], "--spec picks a student a search evaluated, but"),
    ("search", ["--spec", "ab", "--label", "x"], "not allowed with argument"),
    ("search", ["--format", "tflite"], "invalid choice: 'tflite'"),
    (None, [], "does not exist"),
])
def test_export_errors_are_one_line(runs, tmp_path, capsys, which, argv, message):
    search, baseline = runs
    run = {"search": search, "baseline": baseline, None: tmp_path / "nope"}[which]
    assert main(["export", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
