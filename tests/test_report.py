"""`ddc report` (ddc_env.report) and the per-episode search log: a smoke search and a uniform baseline on the
session's synthetic LeNet-5 teacher (tests/conftest.py), read together."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from matplotlib.text import Annotation, Text

from ddc_env.arch import NetSpec, build
from ddc_env.cli import main
from ddc_env.lab.baseline import BaselineConfig, run_baseline
from ddc_env.lab.report import load_live, pareto_figure, read_run, report_rows
from ddc_env.lab.runs import SearchLog
from ddc_env.lab.search import SearchConfig, run_search
from ddc_env.models.teacher import evaluate_accuracy

EPISODES = 4
PNG = b"\x89PNG\r\n\x1a\n"


def _env_kwargs(synth_teacher, synth_dir) -> dict:
    return dict(model="lenet5", teacher=str(synth_teacher.path), dataset="synth", data_dir=str(synth_dir),
                fidelity="smoke", latency="flops", device="cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synth_teacher, synth_dir) -> tuple[Path, Path]:
    """(search run folder, baseline run folder) on the same env."""
    root = tmp_path_factory.mktemp("report_runs")
    env_kwargs = _env_kwargs(synth_teacher, synth_dir)
    config = SearchConfig(env_id="DDC-LeNet5-MNIST", env_kwargs=env_kwargs, agent="random", episodes=EPISODES)
    run_search(config, root / "search", progress=False)
    run_baseline(BaselineConfig(baseline="uniform", env_id="DDC-LeNet5-MNIST", env_kwargs=env_kwargs,
                                kwargs={"widths": [0.5]}), root / "baseline", progress=False)
    return root / "search", root / "baseline"


def test_search_logs_one_line_per_episode(runs):
    search, _ = runs
    lines = [json.loads(line) for line in (search / "episodes.jsonl").read_text().splitlines()]
    summary = json.loads((search / "summary.json").read_text())
    assert summary["kind"] == "search" and len(lines) == summary["episodes"] == EPISODES
    assert [e["episode"] for e in lines] == list(range(1, EPISODES + 1))
    assert max(e["reward"] for e in lines) == summary["best_reward"]
    ok = [e for e in lines if e["status"] == "ok"]
    assert ok and all(0 <= e["val_acc"] <= 1 and e["param_ratio"] > 0 and e["spec_hash"] for e in ok)
    walls = [e["wall_seconds"] for e in lines]
    assert walls == sorted(walls) and walls[-1] <= summary["wall_seconds"]


def test_resumed_log_drops_lines_after_the_checkpoint(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps({"episode": i}) + "\n" for i in range(1, 6)) + '{"episode": 6, "rew')
    log = SearchLog(tmp_path, 10, start_episode=3, progress=False)  # killed after 3 checkpointed episodes
    log.record(0.5, {"status": "ok", "val_acc": 0.9, "param_ratio": 0.25, "latency_ratio": float("nan")})
    log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["episode"] for e in lines] == [1, 2, 3, 4]
    assert lines[-1]["reward"] == 0.5 and lines[-1]["latency_ratio"] is None and lines[-1]["cache_hit"] is None
    SearchLog(tmp_path, 10, start_episode=0, progress=False).close()  # a search started afresh
    assert path.read_text() == ""


def test_report_plots_and_tables_search_and_baseline(runs, tmp_path, capsys):
    search, baseline = runs
    out = tmp_path / "report"
    assert main(["report", str(search), str(baseline), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("curves.png", "pareto.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    markdown = (out / "report.md").read_text()
    assert "| method | val acc | test acc | params | params ratio" in markdown and markdown.split("\n\n")[-1].strip() \
        in printed

    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["teacher", "search", "baseline"]
    assert rows[1]["method"] == "random (search)" and rows[2]["method"] == "uniform 0.5 (baseline)"
    for row in rows:
        assert 0.0 <= row["test_acc"] <= 1.0 and f"| {row['test_acc']:.4f} |" in markdown
        assert f"| {row['method']} |" in markdown
    assert rows[0]["param_ratio"] == 1.0 and 0 < rows[2]["param_ratio"] < 1

    # the search's best student: the same accuracy as measured directly on the test split
    task, ev = load_live(read_run(search))
    net = build(NetSpec.from_json((search / "best_student.json").read_text()))
    net.load_state_dict(torch.load(search / "best_student.pt", weights_only=True))
    data = task.data
    direct = evaluate_accuracy(net, data.test, data.mean, data.std, device=ev.device, precision=ev.precision)
    teacher = evaluate_accuracy(ev.teacher, data.test, data.mean, data.std, device=ev.device,
                                precision=ev.precision)
    assert rows[1]["test_acc"] == pytest.approx(direct, abs=1e-9)
    assert rows[0]["test_acc"] == pytest.approx(teacher, abs=1e-9)


def test_report_without_test_accuracy_defaults_to_the_runs_report_folder(runs, capsys):
    search, baseline = runs
    assert main(["report", str(baseline), str(search), "--no-test"]) == 0
    rows = json.loads((baseline / "report" / "report.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["teacher", "baseline", "search"] and all(r["test_acc"] is None for r in rows)
    assert (baseline / "report" / "curves.png").is_file()
    assert "x fewer) |" in capsys.readouterr().out  # the students' params ratios


def _not_a_run(kind: str, root: Path) -> Path:
    """A path that is not a finished run folder, of the given ``kind``."""
    if kind == "missing":
        return root / "missing"
    if kind == "file":
        (root / "file.txt").write_text("x")
        return root / "file.txt"
    if kind == "unfinished":
        (root / "config.yaml").write_text("env_id: DDC-LeNet5-MNIST\nagent: random\n")
    if kind == "unknown kind":
        (root / "config.yaml").write_text("env_id: DDC-LeNet5-MNIST\n")
        (root / "summary.json").write_text('{"kind": "x"}')
    return root


@pytest.mark.parametrize("kind, message", [
    ("missing", "does not exist"),
    ("file", "is not a run folder but a file"),
    ("empty", "is not a run folder: it has no config.yaml"),
    ("unfinished", "has no summary.json: the run has not finished; continue it with `ddc search --resume"),
    ("unknown kind", "has kind 'x'; a report reads search and baseline runs"),
])
def test_report_rejects_what_is_not_a_run_folder(runs, tmp_path, capsys, kind, message):
    search, _ = runs
    assert main(["report", str(search), str(_not_a_run(kind, tmp_path)), "--no-test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddc report: error:") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_pareto_legend_has_one_entry_per_run_outside_the_axes_and_labels_do_not_overlap(runs, tmp_path):
    """Twelve runs, the baselines' final models all on one spot: the worst case for labels."""
    search, baseline = runs
    dirs = [search] + [shutil.copytree(baseline, tmp_path / f"uniform-{i}") for i in range(11)]
    runs_ = [read_run(d) for d in dirs]
    fig = pareto_figure(runs_, report_rows(runs_, test=False))
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    [legend] = fig.legends
    names = [t.get_text() for t in legend.get_texts()]
    assert names[:12] == [r.name for r in runs_] and names[12].startswith("teacher") and len(names) == 14
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))
        labels = [Text.get_window_extent(a, renderer) for a in ax.texts if isinstance(a, Annotation)]
        assert len(labels) == 11
        assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:])


def test_runs_of_one_env_share_one_teacher_row_whatever_defaults_they_spell_out():
    """Two runs whose env arguments differ only by a default given explicitly, the reward or the store are of one
    env (one teacher row in the report); another fidelity is another env."""
    from ddc_env.lab.report import Run

    def run(**kwargs) -> Run:
        return Run(Path("r"), "baseline", {}, {"env_id": "DDC-LeNet5-MNIST", "env_kwargs": kwargs})

    base = run(dataset="mnist_sample", fidelity="fast")
    assert base.env_key == run(dataset="mnist_sample", fidelity="fast", reward="calibrated", latency="model",
                               store="x.sqlite").env_key
    assert base.env_key == Run(Path("r"), "search", {}, {"env_id": "DDC-LeNet5-MNIST-v0",
                                                         "env_kwargs": {"dataset": "mnist_sample"}}).env_key
    assert base.env_key != run(dataset="mnist_sample", fidelity="zero").env_key
