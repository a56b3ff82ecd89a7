"""The ``ddc`` command. Each top-level command registers its own subparser (see ``COMMANDS``) and sets
``func(args) -> int``; bad input ends in a one-line error on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .data import DataConfig
from .models.builders import MODELS
from .models.checkpoints import CheckpointError, load_teacher, read_sidecar
from .models.teacher import TeacherRecipe, list_teachers, train_teacher
from .paths import teachers_dir
from .train import OptimConfig


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
    ckpt = train_teacher(args.model, data, recipe, device=args.device, out_path=args.out,
                         progress=not args.quiet)
    m = ckpt.meta
    print(f"saved {ckpt.path}: val_acc {m['val_acc']:.4f}, test_acc {m['test_acc']:.4f}, "
          f"{m['num_params']:,} params, {m['train_seconds']:.0f} s training")
    return 0


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
    return str(value)


def _teacher_list(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else teachers_dir()
    if args.dir and not directory.is_dir():
        raise UsageError(f"ddc teacher list: error: --dir {directory} is not a directory")
    entries = list_teachers(directory)
    if not entries:
        print(f"no teachers in {directory}")
        return 0
    keys = ("model", "data", "val_acc", "test_acc", "num_params", "sha256")
    header = ("file", "model", "data", "val", "test", "params", "sha256")
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
        print(f"verification FAILED: {e}")
        return 1
    how = "" if "spec" in meta else ", architecture inferred from the weights"
    print(f"verified: sha256 matches the sidecar; weights fit the {ckpt.spec.arch} spec "
          f"({ckpt.meta['num_params']:,} params, {ckpt.spec.num_classes} classes{how})")
    return 0


def _add_teacher(commands: argparse._SubParsersAction) -> None:
    teacher = commands.add_parser("teacher", help="train, list and inspect teacher checkpoints",
                                  description="Train, list and inspect teacher checkpoints.")
    actions = teacher.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a zoo model on a dataset's train split and cache it")
    train.add_argument("--model", required=True, choices=sorted(MODELS), metavar="MODEL",
                       help=f"zoo model: {', '.join(sorted(MODELS))}")
    train.add_argument("--dataset", required=True,
                       help="cifar10, cifar100, mnist, svhn, or NAME for <data-dir>/NAME_{train,test}.npz")
    train.add_argument("--data-dir", help="directory of the dataset files (default $DDC_DATA_DIR or "
                                          "$DDC_HOME/data)")
    train.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    train.add_argument("--classes", help="class subset: a named set (vehicles, animals, a CIFAR-100 "
                                         "superclass) or comma-separated class names")
    train.add_argument("--epochs", type=_positive_int, help="epochs (default 10)")
    train.add_argument("--batch-size", type=_positive_int, help="batch size (default 256)")
    train.add_argument("--lr", type=_positive_float, help="peak OneCycle learning rate (default 0.2)")
    train.add_argument("--seed", type=int, default=0, help="seed of init, shuffling and augmentation")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    train.add_argument("--out", help="checkpoint path (default $DDC_HOME/teachers/<model>_<dataset>..._seedN.pt)")
    train.add_argument("--max-train", type=_positive_int, help="cap the train split (class-stratified)")
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
    from .quickstart import format_table, run_quickstart

    rows = run_quickstart(args.out, episodes=args.episodes, seed=args.seed, fidelity=args.fidelity,
                          teacher_epochs=args.teacher_epochs, progress=not args.quiet)
    print(format_table(rows))
    print(f"run folder: {Path(args.out).resolve()} (results.sqlite, summary.json)")
    return 0


def _add_quickstart(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("quickstart", help="teacher, search and references on the packaged MNIST sample",
                            description="Train (or reuse) a LeNet-5 teacher on the MNIST sample shipped in the "
                                        "package, search its students, compare with uniform widths; offline.")
    p.add_argument("--out", default="runs/quickstart", help="run folder (default: runs/quickstart)")
    p.add_argument("--episodes", type=_positive_int, default=40, help="search episodes (default: 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", default="fast", help="student training fidelity (default: fast)")
    p.add_argument("--teacher-epochs", type=_positive_int, default=8, help="teacher epochs (default: 8)")
    p.add_argument("--quiet", action="store_true", help="no search progress bar")
    p.set_defaults(func=_quickstart)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


# Each entry adds one top-level command to the ``ddc`` parser.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_teacher, _add_quickstart)


def build_parser() -> argparse.ArgumentParser:
    """The ``ddc`` argument parser with every command of ``COMMANDS``."""
    parser = _Parser(prog="ddc", description="Reinforcement-learning model compression (ddc-env).")
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
