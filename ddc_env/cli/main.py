"""The ``ddc`` command. Each top-level command registers its own subparser (see ``COMMANDS``) and sets
``func(args) -> int``; bad input ends in a one-line error on stderr and exit code 2."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .. import __version__
from ..arch import NetSpec
from ..data import DataConfig
from ..models.registry import MODELS
from ..models.checkpoints import CheckpointError, load_teacher, read_sidecar
from ..models.teacher import TeacherRecipe, list_teachers, train_teacher
from ..paths import teachers_dir
from ..train import OptimConfig
from .argtypes import non_negative_int, positive_float, positive_int
from .table import add_table_command


class UsageError(Exception):
    """Bad command-line input, reported as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, no usage dump) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# -------------------------------------------------------------------------------------------- ddc teacher


def _teacher_train(args: argparse.Namespace) -> int:
    recipe_kwargs: dict[str, Any] = {"seed": args.seed}
    if args.epochs is not None:
        recipe_kwargs["epochs"] = args.epochs
    if args.batch_size is not None:
        recipe_kwargs["batch_size"] = args.batch_size
    if args.lr is not None:
        recipe_kwargs["optim"] = OptimConfig(lr=args.lr)
    recipe = TeacherRecipe(**recipe_kwargs)
    data = DataConfig(args.dataset, data_dir=args.data_dir, download=args.download, classes=args.classes,
                      max_train=args.max_train)
    model = args.model if args.spec is None else _read_spec(args.spec)
    ckpt = train_teacher(model, data, recipe, device=args.device, out_path=args.out, progress=not args.quiet)
    m = ckpt.meta
    print(f"saved {ckpt.path}: val_acc {m['val_acc']:.4f}, test_acc {m['test_acc']:.4f}, "
          f"{m['num_params']:,} params, {m['train_seconds']:.0f} s training")
    return 0


def _read_spec(path: str) -> NetSpec:
    """The architecture in a JSON file written by ``NetSpec.to_json()``."""
    try:
        return NetSpec.from_json(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"ddc teacher train: error: --spec {path}: {' '.join(str(e).split())}") from None


def _cell(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if value is None:
        return "-"
    if key.endswith("_acc"):
        return f"{value:.4f}"
    if key == "num_params":
        return f"{value:,}"
    if key == "sha256":
        return str(value)[:12]
    if key == "data":
        if not isinstance(value, dict):
            return str(value)
        cap = f", max_train {value['max_train']}" if value.get("max_train") else ""
        return f"{value.get('dataset')} ({len(value.get('classes', []))} classes{cap})"
    if key == "recipe" and isinstance(value, dict):
        lr = (value.get("optim") or {}).get("lr")
        return f"{value.get('epochs')} epochs, batch {value.get('batch_size')}, lr {lr}, seed {value.get('seed')}"
    return str(value)


def _teacher_list(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else teachers_dir()
    if args.dir and not directory.is_dir():
        raise UsageError(f"ddc teacher list: error: --dir {directory} is not a directory")
    entries = list_teachers(directory)
    if not entries:
        print(f"no teachers in {directory}")
        return 0
    keys = ("model", "data", "recipe", "val_acc", "test_acc", "num_params", "sha256")
    header = ("file", "model", "data", "recipe", "val", "test", "params", "sha256")
    rows = [(pt.name, *(("error: " + meta["error"],) if "error" in meta else tuple(_cell(meta, k) for k in keys)))
            for pt, meta in entries]
    widths = [max(len(r[i]) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
    print(f"teachers in {directory}:")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _resolve_checkpoint(name: str) -> Path:
    """A checkpoint path from a path (``.pt`` or its ``.pt.json``) or a name in the teachers directory."""
    candidates = [Path(name).expanduser(), teachers_dir() / name, teachers_dir() / f"{name}.pt"]
    for p in candidates:
        if p.name.endswith(".pt.json"):
            p = p.with_name(p.name.removesuffix(".json"))
        if p.is_file():
            return p
    cached = sorted(p.name for p in teachers_dir().glob("*.pt")) if teachers_dir().is_dir() else []
    raise UsageError(f"ddc teacher info: error: no checkpoint {name!r}: not a file, nor a name in {teachers_dir()} "
                     f"(cached: {', '.join(cached) or 'none'})")


def _teacher_info(args: argparse.Namespace) -> int:
    path = _resolve_checkpoint(args.checkpoint)
    meta = read_sidecar(path)
    if args.json:
        print(json.dumps(meta, indent=1))
    else:
        if isinstance(meta.get("spec"), dict):
            units = meta["spec"].get("units", [])
            meta = {**meta, "spec": f"{meta['spec'].get('arch')}, {len(units)} units (--json prints them)"}
        print(f"# {path}")
        print(yaml.safe_dump(meta, sort_keys=False, default_flow_style=None, width=120).rstrip())
    try:
        ckpt = load_teacher(path)
    except CheckpointError as e:
        print(f"ddc teacher info: verification FAILED: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    how = "" if "spec" in meta else ", architecture inferred from the weights"
    print(f"verified: sha256 matches the sidecar; weights fit the {ckpt.spec.arch} spec "
          f"({ckpt.meta['num_params']:,} params, {ckpt.spec.num_classes} classes{how})")
    return 0


def _add_teacher(commands: argparse._SubParsersAction) -> None:
    teacher = commands.add_parser("teacher", help="train, list and inspect teacher checkpoints",
                                  description="Train, list and inspect teacher checkpoints.")
    actions = teacher.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a zoo model (or an architecture of your own) on a dataset's "
                                             "train split and cache it")
    which = train.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", choices=sorted(MODELS), metavar="MODEL",
                       help=f"zoo model: {', '.join(sorted(MODELS))}")
    which.add_argument("--spec", metavar="SPEC_JSON", help="an architecture of your own: a NetSpec saved with "
                                                           "spec.to_json() (it must take the dataset's images and "
                                                           "end in one output per class)")
    train.add_argument("--dataset", required=True,
                       help="cifar10, cifar100, mnist, svhn, or NAME for <data-dir>/NAME_{train,test}.npz")
    train.add_argument("--data-dir", help="directory of the dataset files (default $DDC_DATA_DIR or "
                                          "$DDC_HOME/data)")
    train.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    train.add_argument("--classes", help="class subset: a named set (vehicles, animals, a CIFAR-100 "
                                         "superclass) or comma-separated class names or indices")
    train.add_argument("--epochs", type=positive_int, help="epochs (default 10)")
    train.add_argument("--batch-size", type=positive_int, help="batch size (default 256)")
    train.add_argument("--lr", type=positive_float, help="peak OneCycle learning rate (default 0.2)")
    train.add_argument("--seed", type=int, default=0, help="seed of init, shuffling and augmentation")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    train.add_argument("--out", help="checkpoint path (default $DDC_HOME/teachers/<model>_<dataset>..."
                                      "_e<epochs>_seed<seed>_<recipe hash>.pt)")
    train.add_argument("--max-train", type=positive_int, help="cap the train split (class-stratified)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_teacher_train)

    listing = actions.add_parser("list", help="table of cached teachers")
    listing.add_argument("--dir", help=f"directory to list (default {teachers_dir()})")
    listing.set_defaults(func=_teacher_list)

    info = actions.add_parser("info", help="print a checkpoint's sidecar and verify it")
    info.add_argument("checkpoint", metavar="PATH_OR_NAME", help="a .pt path, or a file name in the teachers dir")
    info.add_argument("--json", action="store_true", help="print the sidecar as stored JSON (with the full spec)")
    info.set_defaults(func=_teacher_info)


# ---------------------------------------------------------------------------------------- ddc quickstart


def _quickstart(args: argparse.Namespace) -> int:
    from .quickstart import run_quickstart

    report = run_quickstart(args.out, episodes=args.episodes, seed=args.seed, fidelity=args.fidelity,
                            teacher_epochs=args.teacher_epochs, agent=args.agent, latency=args.latency,
                            progress=not args.quiet)
    print(report.markdown)
    print("written:\n" + "\n".join(f"  {p.resolve()}" for p in report.paths))
    print(f"run folders: {Path(args.out).resolve()}/{{search,uniform,l1_pruning}} (ddc report / ddc export)")
    return 0


def _add_quickstart(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("quickstart", help="teacher, RL search, baselines and report on the packaged MNIST "
                                               "sample",
                            description="Train (or reuse) a LeNet-5 teacher on the MNIST sample shipped in the "
                                        "package, search its students with an RL agent, run the uniform-width and "
                                        "L1-pruning baselines, and report a table and plots; offline.")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart; an earlier "
                                                            "quickstart there is replaced)")
    p.add_argument("--episodes", type=positive_int, default=60, help="search episodes (default: 60)")
    p.add_argument("--agent", default="maskable_ppo", help="search agent (default: maskable_ppo; see ddc search)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", default="fast", help="student training fidelity (default: fast)")
    p.add_argument("--teacher-epochs", type=positive_int, default=8, help="teacher epochs (default: 8)")
    p.add_argument("--latency", choices=("model", "measured", "flops"), default="model",
                   help="the reward's time term: the latency table's (default, the same in every run), measured CPU "
                        "latency, or the FLOPs ratio")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_quickstart)


# -------------------------------------------------------------------------------------------- ddc search


def _search(args: argparse.Namespace) -> int:
    from ..agents import AGENTS
    from .backend import backend_given, backend_options
    from .search import load_config, read_run_config, run_search

    if args.resume and args.out is None:
        raise UsageError("ddc search: error: --resume needs --out RUN_DIR (the run folder to continue)")
    if not args.resume and args.config is None:
        raise UsageError("ddc search: error: the following arguments are required: --config")
    if args.agent is not None and args.agent not in AGENTS:
        raise UsageError(f"ddc search: error: unknown --agent {args.agent!r}; allowed: {', '.join(AGENTS)}")
    overrides = [*([f"agent={args.agent}"] if args.agent else []), *args.set,
                 *([f"episodes={args.episodes}"] if args.episodes else []),
                 *([f"seed={args.seed}"] if args.seed is not None else [])]
    config = None
    if args.resume:
        saved = read_run_config(args.out)
        if args.config is not None or overrides or args.init_from is not None:
            config = load_config(args.config or Path(args.out) / "config.yaml", overrides)
            if args.episodes is None and not any(o.startswith("episodes=") for o in args.set):
                config = dataclasses.replace(config, episodes=saved.episodes)  # extend only when asked
    else:
        config = load_config(args.config, overrides)
    if args.init_from is not None:
        config = dataclasses.replace(config, init_from=str(Path(args.init_from).resolve()))
    if backend_given(args):
        config = config or read_run_config(args.out)
        try:
            config = dataclasses.replace(config, backend=backend_options(args, config.backend).to_dict())
        except ValueError as e:
            raise UsageError(f"ddc search: error: {e}") from None
    out = Path(args.out) if args.out else (
        Path("runs") / f"{Path(args.config).stem}-{config.agent}-{time.strftime('%Y%m%d-%H%M%S')}")

    def started(run_dir: Path) -> None:
        print(f"run folder: {run_dir.resolve()}\ntensorboard: tensorboard --logdir {run_dir / 'tensorboard'}",
              flush=True)

    try:
        summary = run_search(config, out, resume=args.resume, progress=not args.quiet, on_start=started)
    except KeyboardInterrupt:
        print(f"ddc search: stopped; continue with: ddc search --resume --out {out}", file=sys.stderr)
        raise
    best = summary["best_info"]
    if best.get("status") == "ok":
        print(f"best student (episode {summary['best_episode']}): reward {summary['best_reward']:.4f}, val_acc "
              f"{best['val_acc']:.4f} (teacher {best['teacher_val_acc']:.4f}), params ratio "
              f"{best['param_ratio']:.3f}, FLOPs ratio {best['flop_ratio']:.3f}"
              + (f", latency ratio {best['latency_ratio']:.3f}" if best.get("latency_ratio") is not None else ""))
    else:
        print("no valid student found")
    files = "summary.json, best_student.pt" if summary["best_student"] else "summary.json"
    print(f"{summary['episodes']} episodes ({summary['invalid_episodes']} invalid), {summary['evaluations']} "
          f"students trained, cache-hit rate {summary['cache_hit_rate']:.2f}, {summary['wall_seconds']:.0f} s; "
          f"run folder: {out.resolve()} ({files})")
    return 0


def _add_search(commands: argparse._SubParsersAction) -> None:
    from ..agents import AGENTS
    from .backend import add_backend_arguments

    p = commands.add_parser(
        "search", help="run a search agent on a DDC env from a YAML config",
        description="Search a teacher's students with an agent (RL or reference) from a YAML config; writes a run "
                    "folder (config, results store, TensorBoard, agent checkpoint, best student, summary).",
        epilog="agents:\n" + "\n".join(f"  {name:<16}{entry.summary}" for name, entry in AGENTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML search config (see configs/); optional with --resume")
    p.add_argument("--agent", metavar="NAME", help=f"agent, overrides the config's: {', '.join(AGENTS)}")
    p.add_argument("--episodes", type=positive_int, help="episodes (student evaluations) in all; with --resume, "
                                                          "a larger number extends the search")
    p.add_argument("--seed", type=non_negative_int, help="search seed (overrides the config's)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<config>-<agent>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its config.yaml")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values: env_kwargs.fidelity=smoke agent_kwargs.learning_rate=3e-4 ...")
    p.add_argument("--init-from", metavar="CKPT", help="start the controller from another run's agent.ckpt "
                                                       "(policy transfer)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_arguments(p)
    p.set_defaults(func=_search)


# ------------------------------------------------------------------------------------------ ddc baseline


def _baseline(args: argparse.Namespace) -> int:
    from .baseline import load_baseline_config, run_baseline

    try:
        config = load_baseline_config(args.config, args.name, args.set)
    except ValueError as e:
        raise UsageError(f"ddc baseline: error: {' '.join(str(e).split())}") from None
    out = Path(args.out) if args.out else (
        Path("runs") / f"{Path(args.config).stem}-{args.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    summary = run_baseline(config, out, progress=not args.quiet)
    for r in summary["results"]:
        rec = r["record"]
        latency = f", latency ratio {rec['latency_ratio']:.3f}" if rec.get("latency_ratio") is not None else ""
        print(f"{r['label']}: val_acc {rec['val_acc']:.4f} (teacher {rec['teacher_val_acc']:.4f}), params ratio "
              f"{rec['param_ratio']:.4f}, size {rec['size_bytes'] / 1e6:.3f} MB (ratio {rec['size_ratio']:.4f})"
              f"{latency}")
    print(f"{summary['evaluations']} models measured, {summary['wall_seconds']:.0f} s; run folder: {out.resolve()}")
    return 0


def _add_baseline(commands: argparse._SubParsersAction) -> None:
    from ..baselines import BASELINES

    p = commands.add_parser(
        "baseline", help="run a compression baseline on a DDC env's teacher and data",
        description="Compress the teacher of a DDC env with a baseline (same teacher, data split, fidelity and "
                    "metrics as the env); writes a run folder (config, results store, final models, summary) "
                    "that ddc report compares with searches.",
        epilog="baselines:\n" + "\n".join(f"  {name:<18}{entry.summary}" for name, entry in BASELINES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(BASELINES), metavar="NAME", help="the baseline (listed below)")
    p.add_argument("--config", required=True, help="YAML baselines config (see configs/baselines/*.yaml)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<config>-<name>-<time>)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values with dotted keys, e.g. baselines.l1_pruning.ratio=0.2")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_baseline)


# ------------------------------------------------------------------------------------ ddc report, export


def _report(args: argparse.Namespace) -> int:
    from .report import make_report, read_run

    for path in args.run_dirs:  # every folder is checked before any work
        try:
            read_run(path)
        except ValueError as e:
            raise UsageError(f"ddc report: error: {e}") from None
    report = make_report(args.run_dirs, args.out, test=not args.no_test)
    print(report.markdown)
    print("wrote " + ", ".join(str(p) for p in report.paths))
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "report", help="plots and a results table over search and baseline run folders",
        description="Compare search and baseline run folders: curves.png (reward, accuracy, params and latency "
                    "ratios per episode of each search), pareto.png (accuracy against params and latency ratios "
                    "of every evaluated student, final models marked) and report.md / report.json (teacher, each "
                    "search's best student and each baseline's final models, with test accuracy measured now).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders of ddc search or ddc baseline")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/report of the first run)")
    p.add_argument("--no-test", action="store_true", help="skip measuring test accuracy (faster; shown as -)")
    p.set_defaults(func=_report)


def _export(args: argparse.Namespace) -> int:
    from .export import export_model

    try:
        result = export_model(args.run_dir, fmt=args.format, spec_hash=args.spec, label=args.label, out=args.out)
    except ValueError as e:  # ExportError, or a path that is not a run folder
        raise UsageError(f"ddc export: error: {' '.join(str(e).split())}") from None
    print(f"exported {result.what} to {result.path} ({result.format}); max abs difference from the torch model "
          f"{result.max_abs_diff:.2e} on {result.inputs}")
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export", help="export a run's best student or final model to TorchScript or ONNX",
        description="Export a search's best student (default), a student it evaluated (--spec, trained again as "
                    "the env trained it) or a baseline's final model (--label, default the first) to TorchScript "
                    "or ONNX (fp32, CPU, dynamic batch axis), and check the exported outputs against torch's.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder of ddc search or ddc baseline")
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript",
                   help="torchscript (default) or onnx (needs pip install 'ddc-env[onnx]')")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--spec", metavar="SPEC_HASH", help="a search's evaluated student by spec hash (or prefix)")
    which.add_argument("--label", help="a baseline's final model by label (e.g. 'uniform 0.5')")
    p.add_argument("--out", metavar="FILE", help="output file (default: RUN_DIR/export/<model>.ts or .onnx)")
    p.set_defaults(func=_export)




def _add_benchmark(commands: argparse._SubParsersAction) -> None:
    from .benchmark import add_benchmark_command  # here: benchmark imports search, whose backend imports this module

    add_benchmark_command(commands)


# Each entry adds one top-level command to the ``ddc`` parser.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_teacher, _add_quickstart, _add_search, _add_baseline, _add_report, _add_export, add_table_command,
    _add_benchmark)


def build_parser() -> argparse.ArgumentParser:
    """The ``ddc`` argument parser with every command of ``COMMANDS``."""
    parser = _Parser(prog="ddc", description="Reinforcement-learning model compression (ddc-env).")
    parser.add_argument("--version", action="version", version=f"ddc-env {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ddc`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # DataError, CheckpointError, SpecError, unknown model, bad path
        print("ddc: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
