"""Teacher training: a zoo model trained on a dataset's train split, measured on val and test, cached as a
checkpoint under :func:`~ddc_env.paths.teachers_dir`.

Example::

    ckpt = train_teacher("resnet18", DataConfig("cifar10"), TeacherRecipe(epochs=10))
    ckpt.meta["val_acc"], ckpt.path
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..arch.build import build
from ..arch.spec import NetSpec
from ..data import DataBundle, DataConfig, Split, augment, flips, iterate_batches, load_data, normalize
from ..paths import teachers_dir
from ..progress import bar_disable
from ..train import AMP_MODES, OptimConfig, Precision, chunks, make_optimizer, predict, resolve_device, train_loop
from ..userwarn import warn_user
from ..validate import check_bool, check_choice, check_int, check_number
from .registry import MODELS, get_model_spec
from .checkpoints import CheckpointError, TeacherCheckpoint, read_sidecar, save_teacher

LONG_RUN_SECONDS = 120.0  # warn with an estimate before CPU runs longer than this
PROBE_STEPS = 3  # timed steps (after one warm-up step) behind the estimate


@dataclass(frozen=True)
class TeacherRecipe:
    """How a teacher is trained. ``flip=None`` flips horizontally except on digit datasets (mnist, svhn);
    ``crop_pad=0`` turns random crops off; ``amp`` as in :meth:`ddc_env.train.Precision.for_device` (also used
    to measure val/test accuracy, as students are measured). The defaults are the shared ResNet-18 teacher's."""

    epochs: int = 10
    batch_size: int = 256
    optim: OptimConfig = OptimConfig(lr=0.2)
    label_smoothing: float = 0.1
    crop_pad: int = 4
    flip: bool | None = None
    amp: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            check_int(getattr(self, name), name, minimum=1)
        if not isinstance(self.optim, OptimConfig):
            raise ValueError(f"optim must be an OptimConfig, got {self.optim!r}")
        check_number(self.label_smoothing, "label_smoothing", minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_int(self.crop_pad, "crop_pad")
        if self.flip is not None:
            check_bool(self.flip, "flip")
        check_choice(self.amp, "amp", AMP_MODES)
        check_int(self.seed, "seed")

    def flips(self, dataset: str) -> bool:
        """Whether horizontal flips are used on ``dataset``."""
        return flips(dataset) if self.flip is None else self.flip


def data_key(cfg: DataConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that define the data (not where it is stored), JSON-ready: a cache key."""
    d = dataclasses.asdict(cfg)
    for location in ("data_dir", "download"):
        d.pop(location)
    if isinstance(d["classes"], tuple):
        d["classes"] = list(d["classes"])
    return d


def recipe_key(recipe: TeacherRecipe, dataset: str) -> dict[str, Any]:
    """``recipe`` as a checkpoint's sidecar stores it (``flip`` resolved for ``dataset``), JSON-ready: what
    :func:`find_teacher` matches and :func:`teacher_filename` hashes."""
    return json.loads(json.dumps({**dataclasses.asdict(recipe), "flip": recipe.flips(dataset)}))


def teacher_filename(model: str, cfg: DataConfig, recipe: TeacherRecipe,
                     model_kwargs: Mapping[str, Any] | None = None) -> str:
    """``<model>_<dataset>[_<classes>][_n<max_train>]_e<epochs>_seed<seed>_<hash>.pt``, ``<hash>`` a short hash of
    the whole recipe and ``model_kwargs``: teachers trained differently never overwrite each other."""
    parts = [model, cfg.dataset]
    if cfg.classes is not None:
        classes = cfg.classes if isinstance(cfg.classes, str) else ",".join(map(str, cfg.classes))
        parts.append(re.sub(r"[^A-Za-z0-9.-]+", "-", classes).strip("-"))
    if cfg.max_train is not None:
        parts.append(f"n{cfg.max_train}")
    how = json.dumps({"recipe": recipe_key(recipe, cfg.dataset), "model_kwargs": dict(model_kwargs or {})},
                     sort_keys=True, default=list)
    parts += [f"e{recipe.epochs}", f"seed{recipe.seed}", hashlib.sha256(how.encode()).hexdigest()[:8]]
    return "_".join(parts) + ".pt"


@torch.no_grad()
def evaluate_accuracy(net: nn.Module, split: Split, mean: tuple[float, ...], std: tuple[float, ...], *,
                      device: torch.device | str = "cpu", batch_size: int = 500,
                      precision: Precision | None = None) -> float:
    """Top-1 accuracy of ``net`` on a uint8 split (fp32 unless ``precision`` says otherwise)."""
    device = torch.device(device)
    precision = precision or Precision(None, False)
    batches = (normalize(split.x[s].to(device), mean, std) for s in chunks(len(split), batch_size))
    logits = predict(net, batches, device=device, precision=precision)
    return (logits.argmax(1).cpu() == split.y.cpu()).float().mean().item()


def _epoch(train: Split, recipe: TeacherRecipe, flip: bool, bundle: DataBundle, drop_last: bool,
           gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for xb, yb, _ in iterate_batches(train.x, train.y, recipe.batch_size, shuffle=True, generator=gen,
                                     drop_last=drop_last):
        if recipe.crop_pad or flip:
            xb = augment(xb, gen, recipe.crop_pad, flip)
        yield normalize(xb, bundle.mean, bundle.std), yb


def _progress(total: int, show: bool, what: str, device: torch.device) -> tuple[Callable[[int], None], tqdm]:
    """A per-batch callback updating a tqdm bar over images; after a few timed steps it warns when the
    whole CPU run looks long."""
    bar = tqdm(total=total, unit="img", desc=what, disable=bar_disable(show), dynamic_ncols=True)
    state = {"steps": 0, "images": 0, "t0": 0.0}

    def update(n: int) -> None:
        bar.update(n)
        state["steps"] += 1
        if state["steps"] == 1:  # the first step warms up; time the next ones
            state["t0"] = time.perf_counter()
            return
        state["images"] += n
        if state["steps"] == PROBE_STEPS + 1 and device.type == "cpu":
            rate = state["images"] / max(time.perf_counter() - state["t0"], 1e-9)
            eta = total / rate
            if eta > LONG_RUN_SECONDS:
                warn_user(f"{what}: {total:,} images on CPU at about {rate:.0f} img/s will take about "
                          f"{eta / 60:.0f} min")

    return update, bar


def _probe_setup(model: str, data: DataBundle, recipe: TeacherRecipe, model_kwargs: Mapping[str, Any] | None,
                 device: str | torch.device) -> tuple[NetSpec, torch.device, Precision]:
    """The spec :func:`train_teacher` would build for ``data``, the device and the recipe's precision there."""
    spec = get_model_spec(model, **{**(model_kwargs or {}), "num_classes": data.num_classes,
                                    "in_channels": data.in_channels, "input_size": data.image_size})
    dev = resolve_device(device)
    return spec, dev, Precision.for_device(dev, recipe.amp)


def min_training_seconds(model: str, data: DataBundle, recipe: TeacherRecipe, *,
                         model_kwargs: Mapping[str, Any] | None = None,
                         device: str | torch.device = "auto") -> float:
    """A lower bound of the seconds :func:`train_teacher` would spend, found in well under a second without
    training: every image's forward and backward FLOPs (3x the forward's) at ``device``'s matrix-multiply peak,
    measured now in the recipe's precision. No network trains faster than its device multiplies matrices."""
    spec, dev, precision = _probe_setup(model, data, recipe, model_kwargs, device)
    n = 1024
    a = torch.full((n, n), 0.5, device=dev)  # constants: the global RNG stays untouched
    times = []
    for _ in range(4):
        start = time.perf_counter()
        with precision.autocast(dev):
            a @ a
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    peak = 2 * n**3 / min(times[1:])  # FLOP/s; the first multiply is a warm-up
    return 3 * spec.flops * len(data.train) * recipe.epochs / peak


def estimate_training_seconds(model: str, data: DataBundle, recipe: TeacherRecipe, *,
                              model_kwargs: Mapping[str, Any] | None = None,
                              device: str | torch.device = "auto") -> float:
    """Seconds :func:`train_teacher` would spend training ``model`` on ``data`` with ``recipe`` on ``device``,
    extrapolated from a few real training steps (one untimed warm-up step, then ``PROBE_STEPS`` timed ones)."""
    spec, dev, precision = _probe_setup(model, data, recipe, model_kwargs, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = build(spec)
    net = precision.prepare(net.to(dev)).train()
    batch = min(recipe.batch_size, len(data.train))
    x = normalize(data.train.x[:batch].to(dev), data.mean, data.std)
    y = data.train.y[:batch].to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(PROBE_STEPS + 1):
        start = time.perf_counter()
        with precision.autocast(dev):
            loss = loss_fn(net(precision.inputs(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    per_image = sum(times[1:]) / (PROBE_STEPS * batch)
    return per_image * len(data.train) * recipe.epochs


def train_teacher(model: str | NetSpec, data_cfg: DataConfig, recipe: TeacherRecipe | None = None, *,
                  model_kwargs: Mapping[str, Any] | None = None, device: str | torch.device = "auto",
                  out_path: str | os.PathLike[str] | None = None, progress: bool = True) -> TeacherCheckpoint:
    """Train ``model`` on ``data_cfg``'s train split (never val or test), measure val and test accuracy and save
    the checkpoint to ``out_path`` (default: ``teachers_dir()/teacher_filename(...)``).

    ``model`` is a zoo name, whose spec takes num_classes, in_channels and input_size from the data and
    ``model_kwargs`` for the others (e.g. ``{"stem": "imagenet"}``); or any :class:`~ddc_env.arch.NetSpec` (an
    architecture of your own, described with the ``ddc_env.arch`` units), which must take the data's images and
    end in one output per class. The checkpoint carries the spec, so the env loads it with no zoo name.
    """
    recipe = recipe or TeacherRecipe()
    if isinstance(model, NetSpec):
        if model_kwargs:
            raise ValueError("model_kwargs only shape a zoo model; a NetSpec is the whole architecture")
    elif model not in MODELS:
        raise ValueError(f"unknown model {model!r}; available: {', '.join(sorted(MODELS))} (or pass a NetSpec)")
    clash = sorted(set(model_kwargs or {}) & {"num_classes", "in_channels", "input_size"})
    if clash:
        raise ValueError(f"model_kwargs must not set {', '.join(clash)}: they come from the data")
    if out_path is not None and Path(out_path).is_dir():
        raise ValueError(f"out_path {out_path} is a directory; give the checkpoint's file name (e.g. teacher.pt)")
    dev = resolve_device(device)
    bundle = load_data(data_cfg)
    from_data = {"num_classes": bundle.num_classes, "in_channels": bundle.in_channels,
                 "input_size": bundle.image_size}
    if isinstance(model, NetSpec):
        spec, kwargs, name = model, {}, model.arch
        given = {"num_classes": spec.num_classes, "in_channels": spec.in_channels, "input_size": spec.input_size}
        wrong = [f"{k}={given[k]!r} (the data's: {v!r})" for k, v in from_data.items() if given[k] != v]
        if wrong:
            raise ValueError(f"the {spec.arch} spec does not fit {data_cfg.dataset}: {', '.join(wrong)}")
        filename = f"{spec.arch}-{spec.hash()[:8]}"  # architectures of one name may differ
    else:
        kwargs = {**(model_kwargs or {}), **from_data}
        spec, name = get_model_spec(model, **kwargs), model
        filename = model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = build(spec)
    precision = Precision.for_device(dev, recipe.amp)
    net = precision.prepare(net.to(dev))

    train = bundle.train.to(dev)
    drop_last = len(train) >= recipe.batch_size
    steps_per_epoch = len(train) // recipe.batch_size if drop_last else 1
    opt, sched = make_optimizer(net, recipe.optim, recipe.epochs * steps_per_epoch)
    gen = torch.Generator(device=dev).manual_seed(recipe.seed)
    flip = recipe.flips(data_cfg.dataset)
    epochs = (_epoch(train, recipe, flip, bundle, drop_last, gen) for _ in range(recipe.epochs))
    seen = steps_per_epoch * recipe.batch_size if drop_last else len(train)
    update, bar = _progress(recipe.epochs * seen, progress, f"teacher {name}/{data_cfg.dataset}", dev)
    loss = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    try:
        result = train_loop(net, epochs, loss, opt, sched, device=dev, precision=precision, progress=update)
    finally:
        bar.close()
    if result.diverged:
        raise RuntimeError(f"teacher training diverged (non-finite loss after {result.steps} steps); "
                           f"lower the learning rate (now {recipe.optim.lr})")
    net.eval()
    # measured as students will be: with the device's precision policy
    val_acc = evaluate_accuracy(net, bundle.val, bundle.mean, bundle.std, device=dev, precision=precision)
    test_acc = evaluate_accuracy(net, bundle.test, bundle.mean, bundle.std, device=dev, precision=precision)
    meta = {
        "model": name,
        "model_kwargs": kwargs,
        "class_names": list(bundle.class_names),
        "class_indices": list(bundle.class_indices),
        "data": {**bundle.describe(), "fingerprint": bundle.fingerprint()},
        "data_config": data_key(data_cfg),
        "normalize_mean": list(bundle.mean),
        "normalize_std": list(bundle.std),
        "val_acc": round(val_acc, 6),
        "test_acc": round(test_acc, 6),
        "recipe": {**dataclasses.asdict(recipe), "flip": flip, "device": str(dev),
                   "amp_dtype": str(precision.amp_dtype).removeprefix("torch.") if precision.amp_dtype else "fp32",
                   "channels_last": precision.channels_last},
        "seed": recipe.seed,
        "train_seconds": round(result.seconds, 1),
        "train_images_per_second": round(result.images_per_second, 1),
        "final_train_loss": round(result.last_loss, 5),
    }
    path = Path(out_path) if out_path is not None else teachers_dir() / teacher_filename(filename, data_cfg, recipe,
                                                                                           model_kwargs)
    return save_teacher(net, spec, meta, path)


CHANCE_MARGIN = 0.05  # a teacher within this of chance accuracy has learnt (almost) nothing


def warn_if_near_chance(teacher: TeacherCheckpoint) -> None:
    """Warn when ``teacher``'s validation accuracy (its sidecar's) is within :data:`CHANCE_MARGIN` of chance: its
    students would have nothing to learn from it."""
    val_acc, n = teacher.meta.get("val_acc"), teacher.spec.num_classes
    if isinstance(val_acc, (int, float)) and val_acc < 1 / n + CHANCE_MARGIN:
        warn_user(f"the teacher {teacher.path} scores {val_acc:.3f} on its validation split, within "
                  f"{CHANCE_MARGIN:.0%} of chance ({1 / n:.3f} for {n} classes): its students have nothing to learn "
                  f"from it; train it longer (more epochs) or check its data")


def list_teachers(directory: str | os.PathLike[str] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.pt`` in ``directory`` (default ``teachers_dir()``) with its sidecar; an unreadable or
    missing sidecar gives ``{"error": message}``."""
    root = Path(directory) if directory is not None else teachers_dir()
    out = []
    for pt in sorted(root.glob("*.pt")) if root.is_dir() else []:
        try:
            out.append((pt, read_sidecar(pt)))
        except CheckpointError as e:
            out.append((pt, {"error": str(e)}))
    return out


def find_teacher(model: str, data_cfg: DataConfig, seed: int = 0,
                 directory: str | os.PathLike[str] | None = None,
                 recipe: TeacherRecipe | None = None) -> Path | None:
    """The cached checkpoint of ``model`` trained with ``seed`` on the data ``data_cfg`` describes (same
    dataset, classes, split and caps; any data_dir) and, when ``recipe`` is given, with exactly that recipe
    (its seed replaces ``seed``); best val_acc first; None when there is none."""
    key = data_key(data_cfg)
    wanted = None if recipe is None else recipe_key(recipe, data_cfg.dataset)
    if recipe is not None:
        seed = recipe.seed

    def same_recipe(meta: dict[str, Any]) -> bool:
        stored = meta.get("recipe") or {}
        return wanted is None or all(stored.get(k) == v for k, v in wanted.items())

    found = [(meta.get("val_acc", -math.inf), pt) for pt, meta in list_teachers(directory)
             if meta.get("model") == model and meta.get("seed") == seed and meta.get("data_config") == key
             and same_recipe(meta)]
    return max(found)[1] if found else None
