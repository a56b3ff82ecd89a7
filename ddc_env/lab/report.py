"""Reports over run folders: searches (``ddc search``) and baselines (``ddc baseline``) side by side.

:func:`make_report` reads any mix of run folders and writes, to ``out`` (default: the first run folder's
``report/``):

- ``curves.png``: reward, validation accuracy, params ratio and latency ratio (FLOPs ratio when latency was not
  measured) per episode of each search (from ``episodes.jsonl``): every episode as a point, the best student so
  far (by reward) as a line
- ``pareto.png``: validation accuracy against params ratio and against latency (or FLOPs) ratio; every evaluated
  student of every run as a small point, each search's best and each baseline's final models marked, the teacher
  as a star at (1, teacher accuracy)
- ``report.md``: the final models in the DDC paper's table form (method, val and test accuracy, params, params,
  FLOPs and latency ratios, size, evaluations, wall time); ``report.json``: the same rows as data

Test accuracy is measured here only, once per final model (the teacher, each search's best student, each
baseline's final models), on the test split of the run's env data (the teacher's logits narrowed to a class
subset as the env does), with the live task of the run's env (one per distinct env id and arguments); runs on a
benchmark twin have no test split and show none.

Example::

    ddc report runs/lenet5-reinforce runs/lenet5-uniform --out runs/report
    report = make_report(["runs/lenet5-reinforce", "runs/lenet5-uniform"], "runs/report")
    print(report.markdown)
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .. import registration
from ..arch import NetSpec, build
from ..distill import Distiller
from ..env import make_live_scorer
from ..models.teacher import evaluate_accuracy
from ..paths import atomic_write_text
from ..store import ResultsStore
from ..task import Task, load_task
from ..train import Precision
from .runs import CONFIG_FILE, STORE_FILE, SUMMARY_FILE
from .runs import read_episodes as read_episode_lines

KINDS = ("search", "baseline")
_HINT = "expected the folder of a finished `ddc search` or `ddc baseline` run"
_NOT_THE_ENV = ("store", "run", "reward")  # env arguments that change neither the teacher, the data nor the students


@dataclass(frozen=True)
class Run:
    """A finished run folder: ``kind`` "search" or "baseline", its ``summary.json`` and ``config.yaml``."""

    path: Path
    kind: str
    summary: dict[str, Any]
    config: dict[str, Any]

    @property
    def name(self) -> str:
        """The agent or baseline name and the folder name, e.g. ``reinforce (run3)``."""
        what = self.config.get("agent") if self.kind == "search" else self.config.get("baseline")
        return f"{what} ({self.path.name})"

    @property
    def env_key(self) -> str:
        """The env this run evaluated on: env id and arguments, a live env's resolved against its preset (so a
        default given explicitly is the same env); the reward, results store and run name left out."""
        env_id = self.config["env_id"]
        kwargs = {k: v for k, v in self.config.get("env_kwargs", {}).items() if k not in _NOT_THE_ENV}
        if registration.is_live(env_id):
            resolved = registration.env_config(env_id, kwargs)
            kwargs = {f.name: getattr(resolved, f.name) for f in dataclasses.fields(resolved)
                      if f.name not in _NOT_THE_ENV}
        return json.dumps([registration.resolve_id(env_id), kwargs], sort_keys=True, default=str)

    def store_rows(self) -> list[dict[str, Any]]:
        """Every row of the run's results store (none when the file is missing)."""
        path = self.path / STORE_FILE
        if not path.is_file():
            return []
        with ResultsStore(path) as store:
            return store.query()


def read_run(path: str | Path) -> Run:
    """The run folder at ``path``; a ValueError says why a path is not one (missing, unfinished, unknown)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no run folder {path}: the path does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is not a run folder but a file ({_HINT})")
    summary_path, config_path = path / SUMMARY_FILE, path / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{path} is not a run folder: it has no {CONFIG_FILE} ({_HINT})")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{config_path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(config, dict) or "env_id" not in config:
        raise ValueError(f"{config_path} is not a run config (no env_id; {_HINT})")
    if not summary_path.is_file():
        resume = f"; continue it with `ddc search --resume --out {path}`" if "agent" in config else ""
        raise ValueError(f"{path} has no {SUMMARY_FILE}: the run has not finished{resume}")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{summary_path} is not valid JSON: {e}") from None
    kind = summary.get("kind") if isinstance(summary, dict) else None
    if kind is None and isinstance(summary, dict) and "agent" in config:
        kind = "search"  # summaries written before "kind" existed
    if kind not in KINDS:
        raise ValueError(f"{summary_path} has kind {kind!r}; a report reads {' and '.join(KINDS)} runs")
    return Run(path, kind, summary, config)


def read_episodes(run: Run) -> list[dict[str, Any]]:
    """The lines of a search's ``episodes.jsonl`` (none when missing; a torn last line is skipped)."""
    return read_episode_lines(run.path)


# ------------------------------------------------------------------------------------------- final models


@dataclass(frozen=True)
class FinalModel:
    """A model a run ends with: its record and files (``{"spec", "weights"}`` or ``{"torchscript"}``, relative
    to the run folder; None when none were saved)."""

    run: Run
    method: str
    record: dict[str, Any]
    files: dict[str, str] | None
    evaluations: int | None
    wall_seconds: float | None


def final_models(run: Run) -> list[FinalModel]:
    """A search's best student (when it found a valid one) or every final result of a baseline."""
    s = run.summary
    if run.kind == "search":
        best = s.get("best_info") or {}
        if best.get("status") != "ok":
            return []
        return [FinalModel(run, run.name, best, s.get("best_student"), s.get("evaluations"), s.get("wall_seconds"))]
    return [FinalModel(run, f"{r['label']} ({run.path.name})", r["record"], r.get("model"), r.get("evaluations"),
                       r.get("wall_seconds")) for r in s.get("results", [])]


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch's notes that ``torch.jit`` is deprecated (TorchScript files are what runs hold and export)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        yield


def load_model(run_dir: Path, files: dict[str, str]) -> tuple[nn.Module, NetSpec | None]:
    """A saved model on the CPU in eval mode: spec + state dict (built with its spec) or a TorchScript module."""
    if "torchscript" in files:
        with quiet_jit():
            return torch.jit.load(str(run_dir / files["torchscript"]), map_location="cpu").eval(), None
    spec = NetSpec.from_json((run_dir / files["spec"]).read_text())
    net = build(spec)
    net.load_state_dict(torch.load(run_dir / files["weights"], map_location="cpu", weights_only=True), strict=True)
    return net.eval(), spec


def load_live(run: Run) -> tuple[Task, Distiller]:
    """The live task of a run's env (teacher and data) and its distiller at the run's fidelity."""
    kwargs = {k: v for k, v in run.config.get("env_kwargs", {}).items() if k not in ("store", "run")}
    config = registration.env_config(run.config["env_id"], kwargs)
    task = load_task(config.task_config(), progress=False)
    return task, make_live_scorer(config, task).distiller


class _Narrow(nn.Module):
    """A teacher whose logits are narrowed to a class subset (as the env's evaluator does)."""

    def __init__(self, net: nn.Module, classes: Sequence[int]) -> None:
        super().__init__()
        self.net, self.classes = net, list(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, self.classes]


def measure_test_accuracy(distiller: Distiller, net: nn.Module, *, teacher: bool = False) -> float:
    """Top-1 accuracy of ``net`` on the task data's test split: on the distiller's device and precision (as
    validation accuracy is measured), TorchScript modules on the CPU in fp32; ``teacher=True`` narrows the
    logits to the task's class subset."""
    data = distiller.data
    if isinstance(net, torch.jit.ScriptModule):
        device, precision = torch.device("cpu"), Precision(None, False)
    else:
        device, precision = distiller.device, distiller.precision
        net = precision.prepare(net.to(device))
    if teacher and distiller.class_indices is not None:
        net = _Narrow(net, distiller.class_indices)
    return evaluate_accuracy(net, data.test, data.mean, data.std, device=device, precision=precision)


# --------------------------------------------------------------------------------------------------- rows


def _teacher_row(run: Run, env_label: str) -> dict[str, Any]:
    """The teacher's row from the teacher values a run recorded."""
    s = run.summary
    if run.kind == "baseline":
        t = s.get("teacher", {})
    else:
        info = s.get("best_info") or {}
        t = {k.removeprefix("teacher_"): v for k, v in info.items() if k.startswith("teacher_")}
    return {"kind": "teacher", "method": env_label, "run": None, "val_acc": t.get("val_acc"), "test_acc": None,
            "params": t.get("params"), "param_ratio": 1.0, "flop_ratio": 1.0,
            "latency_ratio": 1.0 if t.get("latency_ms") is not None else None, "size_bytes": t.get("size_bytes"),
            "evaluations": None, "wall_seconds": None, "spec_hash": None}


def _model_row(model: FinalModel) -> dict[str, Any]:
    r = model.record
    return {"kind": model.run.kind, "method": model.method, "run": str(model.run.path), "val_acc": r.get("val_acc"),
            "test_acc": None, "params": r.get("params"), "param_ratio": r.get("param_ratio"),
            "flop_ratio": r.get("flop_ratio"), "latency_ratio": r.get("latency_ratio"),
            "size_bytes": r.get("size_bytes"), "evaluations": model.evaluations, "wall_seconds": model.wall_seconds,
            "spec_hash": r.get("spec_hash")}


def _teacher_label(run: Run, several: bool) -> str:
    path = (run.summary.get("teacher") or {}).get("path")
    name = Path(path).name if path else run.config.get("env_kwargs", {}).get("model", "?")
    return f"teacher ({name}, {run.config['env_id']})" if several else f"teacher ({name})"


def report_rows(runs: Sequence[Run], *, test: bool = True) -> list[dict[str, Any]]:
    """One row per teacher (distinct env), per search's best student and per baseline final model; with
    ``test``, each row's ``test_acc`` is measured on its env's test split."""
    by_env: dict[str, list[Run]] = {}
    for run in runs:
        by_env.setdefault(run.env_key, []).append(run)
    rows = []
    for env_runs in by_env.values():
        first = env_runs[0]
        distiller = load_live(first)[1] if test and registration.is_live(first.config["env_id"]) else None
        teacher = _teacher_row(first, _teacher_label(first, len(by_env) > 1))
        if distiller is not None:
            teacher["test_acc"] = measure_test_accuracy(distiller, distiller.teacher, teacher=True)
        rows.append(teacher)
        for run in env_runs:
            for model in final_models(run):
                row = _model_row(model)
                if distiller is not None and model.files and ({"torchscript", "weights"} & set(model.files)):
                    row["test_acc"] = measure_test_accuracy(distiller, load_model(run.path, model.files)[0])
                rows.append(row)
    return rows


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 1.0 or value <= 0 else f"{value:.3f} ({1 / value:.1f}x fewer)"


COLUMNS = ("method", "val acc", "test acc", "params", "params ratio", "FLOPs ratio", "latency ratio", "size (MB)",
           "evaluations", "wall time")


def format_table(rows: Iterable[dict[str, Any]]) -> str:
    """The rows as a markdown table in the DDC paper's form."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for r in rows:
        size = r["size_bytes"] / 1e6 if r["size_bytes"] is not None else None
        cells = (r["method"], _num(r["val_acc"], ".4f"), _num(r["test_acc"], ".4f"), _num(r["params"], ","),
                 _ratio(r["param_ratio"]), _num(r["flop_ratio"], ".3f"), _num(r["latency_ratio"], ".3f"),
                 _num(size, ".3f"), _num(r["evaluations"], "d"), _duration(r["wall_seconds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- plots


def _best_so_far(episodes: list[dict[str, Any]], key: str) -> list[float]:
    """``key`` of the best-rewarded episode up to each episode (NaN while that value is missing)."""
    out, best, best_reward = [], None, -math.inf
    for e in episodes:
        if e.get("reward") is not None and e["reward"] > best_reward:
            best, best_reward = e, e["reward"]
        value = best.get(key) if best is not None else None
        out.append(math.nan if value is None else float(value))
    return out


def plot_curves(runs: Sequence[Run], path: Path) -> Path | None:
    """``curves.png``: per-episode metrics of each search; None when no search has an episode log."""
    from matplotlib.figure import Figure  # here and below: matplotlib is slow to import, and only plots need it

    logs = [(run, eps) for run in runs if run.kind == "search" and (eps := read_episodes(run))]
    if not logs:
        return None
    latency = all(e.get("latency_ratio") is not None for _, eps in logs for e in eps if e.get("status") == "ok")
    panels = [("reward", "reward"), ("val_acc", "validation accuracy"), ("param_ratio", "params ratio"),
              ("latency_ratio", "latency ratio") if latency else ("flop_ratio", "FLOPs ratio (latency not measured)")]
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for i, (run, eps) in enumerate(logs):
        color = f"C{i % 10}"
        x = [e["episode"] for e in eps]
        for ax, (key, _) in zip(axes, panels):
            points = [(e["episode"], e[key]) for e in eps if e.get(key) is not None]
            if points:
                ax.scatter(*zip(*points), s=10, alpha=0.4, color=color)
            ax.plot(x, _best_so_far(eps, key), color=color, drawstyle="steps-post", label=run.name)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("episode")
        ax.grid(alpha=0.3)
    axes[0].legend(title="line: best so far (by reward)", fontsize="small")
    fig.savefig(path, dpi=110)
    return path


_MARKERS = ("s", "^", "v", "P", "X", "h", "<", ">", "p")  # ("D": a search's best, "*": the teacher)
# label offsets (points) tried in turn around a final model: near first, then farther out with a leader line
_OFFSETS = tuple((dx * r, dy * r) for r in (6, 14, 24, 36, 50, 66, 84) for dx, dy in
                 ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.2), (0, -1.2), (1.2, 0), (-1.2, 0)))


def plot_pareto(runs: Sequence[Run], rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """``pareto.png``: validation accuracy against params ratio and against latency (or FLOPs) ratio (see
    :func:`pareto_figure`)."""
    pareto_figure(runs, rows).savefig(path)
    return path


def pareto_figure(runs: Sequence[Run], rows: Sequence[dict[str, Any]]) -> Any:
    """The Pareto figure: each run has one colour and one legend entry, outside the axes; baselines' final models
    are labelled where the labels cover no other label or marker."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = [[r["record"] for r in run.store_rows() if r["record"].get("status") == "ok"] for run in runs]
    finals = [final_models(run) for run in runs]
    every = [rec for recs in points for rec in recs] + [m.record for models in finals for m in models]
    latency = bool(every) and all(rec.get("latency_ratio") is not None for rec in every)
    second = ("latency_ratio", "latency ratio (student / teacher)") if latency else \
        ("flop_ratio", "FLOPs ratio (student / teacher; latency not measured)")
    colors = colormaps["tab10" if len(runs) <= 10 else "tab20"].colors
    style = [(colors[i % len(colors)], "D" if run.kind == "search" else _MARKERS[i % len(_MARKERS)])
             for i, run in enumerate(runs)]
    teachers = [row for row in rows if row["kind"] == "teacher" and row["val_acc"] is not None]
    fig = Figure(figsize=(15, 5.5), dpi=110, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    labels: list[list[tuple[float, float, str]]] = [[], []]  # per panel: baseline final models to label
    marked: list[list[tuple[float, float]]] = [[], []]  # per panel: the big markers labels must not cover
    for k, (ax, (key, title)) in enumerate(zip(axes, [("param_ratio", "params ratio (student / teacher)"), second])):
        for (color, marker), recs, models in zip(style, points, finals):
            recs = [r for r in recs if r.get(key) is not None]
            ax.scatter([r[key] for r in recs], [r["val_acc"] for r in recs], s=8, alpha=0.35, color=color)
            for m in models:
                if m.record.get(key) is not None:
                    ax.scatter(m.record[key], m.record["val_acc"], s=80 if marker == "D" else 55, marker=marker,
                               color=color, edgecolors="black", zorder=3)
                    marked[k].append((m.record[key], m.record["val_acc"]))
                    if m.run.kind == "baseline":
                        labels[k].append((m.record[key], m.record["val_acc"], m.record.get("label", m.method)))
        for row in teachers:
            ax.scatter(1.0, row["val_acc"], s=220, marker="*", color="gold", edgecolors="black", zorder=4)
            marked[k].append((1.0, row["val_acc"]))
        ax.set_xlabel(title)
        ax.set_ylabel("validation accuracy")
        ax.margins(0.06, 0.12)  # room for labels at the edges
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], linestyle="none", marker=marker, markersize=8, color=color, markeredgecolor="black",
                      label=run.name) for run, (color, marker) in zip(runs, style)]
    handles += [Line2D([], [], linestyle="none", marker="*", markersize=14, color="gold", markeredgecolor="black",
                       label=row["method"]) for row in teachers]
    handles.append(Line2D([], [], linestyle="none", marker="o", markersize=4, color="grey", alpha=0.5,
                          label="small dots: every student evaluated"))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", title="runs (◆ a search's best)")
    fig.draw_without_rendering()  # the layout is final: label boxes can be measured
    renderer = canvas.get_renderer()
    for ax, items, markers in zip(axes, labels, marked):
        _place_labels(ax, items, markers, renderer)
    return fig


def _place_labels(ax: Any, items: Sequence[tuple[float, float, str]], markers: Sequence[tuple[float, float]],
                  renderer: Any) -> None:
    """Annotate each ``(x, y, text)`` at the first offset of :data:`_OFFSETS` where the label stays inside the axes
    and covers neither one of the ``markers`` nor a label placed before (farther ones get a leader line); when no
    offset is free, at the one that covers least."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    inside = ax.get_window_extent(renderer)
    pad = 7  # pixels around a marker
    taken = [Bbox.from_extents(px - pad, py - pad, px + pad, py + pad)
             for px, py in (ax.transData.transform(xy) for xy in markers)]
    for x, y, text in items:
        tries = []
        for dx, dy in _OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center",
                              va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                              arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6} if max(abs(dx), abs(dy)) > 8
                              else None)
            ann.set_in_layout(False)
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer)  # the text alone, not its leader line
            out = not (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1)
            tries.append((100 * out + sum(box.overlaps(other) for other in taken), len(tries), ann, box))
            if tries[-1][0] == 0:
                break
        best = min(tries, key=lambda t: t[:2])
        for _, _, ann, _ in tries:
            if ann is not best[2]:
                ann.remove()
        taken.append(best[3])


# ------------------------------------------------------------------------------------------------- report


@dataclass
class Report:
    """What :func:`make_report` wrote: the table rows, the markdown table and every written file."""

    rows: list[dict[str, Any]]
    markdown: str
    paths: list[Path] = field(default_factory=list)


def make_report(run_dirs: Sequence[str | Path], out: str | Path | None = None, *, test: bool = True) -> Report:
    """Read the run folders, measure test accuracy of the final models (unless ``test=False``) and write the
    plots, ``report.md`` and ``report.json`` to ``out`` (default: the first run folder's ``report/``)."""
    if not run_dirs:
        raise ValueError("a report needs at least one run folder")
    runs = [read_run(p) for p in run_dirs]
    out = Path(out) if out is not None else runs[0].path / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = report_rows(runs, test=test)
    markdown = format_table(rows)
    paths = [p for p in (plot_curves(runs, out / "curves.png"), plot_pareto(runs, rows, out / "pareto.png"))
             if p is not None]
    atomic_write_text(out / "report.md", f"# Report\n\nRuns: {', '.join(str(r.path) for r in runs)}\n\n"
                                         f"{markdown}\n")
    atomic_write_text(out / "report.json", json.dumps({"runs": [str(r.path) for r in runs], "rows": rows},
                                                      indent=1, default=str))
    return Report(rows, markdown, [*paths, out / "report.md", out / "report.json"])


__all__ = ["FinalModel", "Report", "Run", "final_models", "format_table", "load_live", "load_model", "make_report",
           "measure_test_accuracy", "pareto_figure", "plot_curves", "plot_pareto", "quiet_jit", "read_episodes",
           "read_run", "report_rows"]
