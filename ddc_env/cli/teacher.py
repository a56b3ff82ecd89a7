"""``ddc teacher``: train, list and inspect teacher checkpoints."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from ..arch import NetSpec
from ..data import DataConfig
from ..models.checkpoints import CheckpointError, load_teacher, read_sidecar
from ..models.registry import MODELS
from ..models.teacher import TeacherRecipe, list_teachers, train_teacher
from ..paths import teachers_dir
from ..train import OptimConfig
from .argtypes import positive_float, positive_int
from .usage import usage_error

__all__ = ["add_command"]


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
        raise usage_error("ddc teacher train", f"--spec {path}: {e}") from None


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
        raise usage_error("ddc teacher list", f"--dir {directory} is not a directory")
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
    raise usage_error("ddc teacher info", f"no checkpoint {name!r}: not a file, nor a name in {teachers_dir()} "
                                          f"(cached: {', '.join(cached) or 'none'})")


def _teacher_info(args: argparse.Namespace) -> int:
    path = _resolve_checkpoint(args.checkpoint)
    meta = read_sidecar(path)
    try:  # verified first: a checkpoint that fails gets only the error, no metadata that looks like it is fine
        ckpt = load_teacher(path)
    except CheckpointError as e:
        print(f"ddc teacher info: verification FAILED: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(meta, indent=1))
    else:
        if isinstance(meta.get("spec"), dict):
            units = meta["spec"].get("units", [])
            meta = {**meta, "spec": f"{meta['spec'].get('arch')}, {len(units)} units (--json prints them)"}
        print(f"# {path}")
        print(yaml.safe_dump(meta, sort_keys=False, default_flow_style=None, width=120).rstrip())
    how = "" if "spec" in meta else ", architecture inferred from the weights"
    print(f"verified: sha256 matches the sidecar; weights fit the {ckpt.spec.arch} spec "
          f"({ckpt.meta['num_params']:,} params, {ckpt.spec.num_classes} classes{how})")
    return 0


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``ddc teacher train|list|info``."""
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

