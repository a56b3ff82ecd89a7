"""A compression task: everything fixed for one problem, built once and shared by the env, the scorers, the
baselines, reports and export.

A :class:`Task` is the teacher's architecture and identity, the data split and class subset its students serve,
and the decision table an agent works through (``student_spec(choices)``). Its light part (:meth:`Task.to_dict`)
is plain JSON: benchmark tables carry it, so a tabular or surrogate twin has the same decisions and specs as the
live env without any data or teacher file. A live task (:func:`load_task`) also holds the loaded teacher and data.

Example::

    task = load_task(TaskConfig(model="lenet5", dataset="mnist_sample"))
    task.decisions[0].name, task.student_spec({"conv1": 0.5}).params
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .arch import FORMS, N2N_WIDTHS, ActionCodec, Choice, Decision, NetSpec, apply_decisions, decision_table
from .data import (KNOWN_DATASETS, PACKAGED_DATASETS, DataBundle, DataConfig, load_data, npz_paths, resolve_classes,
                   resolve_data_dir)
from .data.sources import ASSETS_DIR
from .models.registry import MODELS, get_model_spec
from .models.checkpoints import TeacherCheckpoint, load_teacher, read_spec
from .models.teacher import (TeacherRecipe, estimate_training_seconds, find_teacher, min_training_seconds,
                             train_teacher, warn_if_near_chance)
from .paths import PACKAGED_TEACHERS_DIR, teachers_dir
from .train import OptimConfig
from .userwarn import warn_user
from .validate import check_bool, check_choice, check_device, check_int, check_names, check_number, check_numbers

__all__ = ["Task", "TaskConfig", "TaskError", "describe_task", "load_task"]

_DATA_KWARGS = ("num_classes", "in_channels", "input_size")  # model kwargs that come from the data
AUTO_TRAIN_LIMIT_SECONDS = 300.0  # an "auto" teacher trains inside the env only when it takes less than this


class TaskError(ValueError):
    """A task that cannot be built as configured (no teacher, a teacher that does not fit the data, ...)."""


@dataclass(frozen=True)
class TaskConfig:
    """What defines a task: the teacher (``teacher``: "auto", a checkpoint path or a loaded checkpoint; ``model``,
    ``model_kwargs``, ``teacher_epochs``, ``teacher_recipe`` only shape an "auto" teacher, a checkpoint brings its
    own architecture), the data (``dataset``, ``data_dir``, ``download``: fetch a torchvision dataset that is not
    on disk, ``classes``, ``max_train``, ``max_val``) and the decisions (``width_choices``, ``kernel_shrink``, ``forms``,
    ``channel_round``, ``min_channels``).
    ``train_teacher``: let an "auto" teacher that is not cached train now even when that takes long."""

    model: str = "resnet18"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    teacher: str | os.PathLike[str] | TeacherCheckpoint = "auto"
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = True
    classes: str | tuple[str | int, ...] | None = None
    max_train: int | None = None
    max_val: int | None = None
    width_choices: tuple[float, ...] = N2N_WIDTHS
    kernel_shrink: bool = False
    forms: Mapping[str, float | None] | Sequence[str] = ()
    channel_round: int = 8
    min_channels: int = 8
    teacher_epochs: int | None = None
    teacher_recipe: TeacherRecipe | Mapping[str, Any] | None = None
    train_teacher: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        check_choice(self.model, "model", sorted(MODELS))
        if not isinstance(self.model_kwargs, Mapping):
            raise ValueError(f"model_kwargs must be a mapping, got {self.model_kwargs!r}")
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "width_choices", check_widths(self.width_choices))
        object.__setattr__(self, "forms", check_forms(self.forms))
        for name in ("channel_round", "min_channels"):
            check_int(getattr(self, name), name, minimum=1)
        for name in ("teacher_epochs", "max_train", "max_val"):
            check_int(getattr(self, name), name, minimum=1, optional=True)
        for name in ("download", "kernel_shrink", "train_teacher"):
            check_bool(getattr(self, name), name)
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir must be a path or None, got {self.data_dir!r}")
        if not isinstance(self.teacher, (str, os.PathLike, TeacherCheckpoint)):
            raise ValueError(f"teacher must be 'auto', a checkpoint path or a TeacherCheckpoint, "
                             f"got {type(self.teacher).__name__}")
        check_device(self.device)
        self.recipe()
        self.data_config()
        if self.teacher == "auto":  # the zoo builds the teacher: its arguments must build a spec
            try:
                get_model_spec(self.model, **self.model_kwargs)
            except (TypeError, ValueError) as e:
                raise ValueError(f"model_kwargs of {self.model}: {e}") from None

    def data_config(self) -> DataConfig:
        """The data the students are trained and rewarded on."""
        return DataConfig(self.dataset, self.data_dir, self.download, self.classes, max_train=self.max_train,
                          max_val=self.max_val)

    def teacher_data_config(self) -> DataConfig:
        """The data an "auto" teacher is trained on: all classes of the dataset (a class subset is compressed
        from the whole dataset's teacher, as in DDC), same split and caps."""
        return dataclasses.replace(self.data_config(), classes=None)

    def recipe(self) -> TeacherRecipe:
        """The training recipe of an "auto" teacher: ``teacher_recipe`` with ``teacher_epochs`` applied."""
        recipe = self.teacher_recipe
        if isinstance(recipe, Mapping):
            check_names(recipe, [f.name for f in dataclasses.fields(TeacherRecipe)], "teacher_recipe field(s)")
            kwargs = dict(recipe)
            if isinstance(kwargs.get("optim"), Mapping):
                check_names(kwargs["optim"], [f.name for f in dataclasses.fields(OptimConfig)],
                            "teacher_recipe.optim field(s)")
                try:
                    kwargs["optim"] = OptimConfig(**kwargs["optim"])
                except ValueError as e:
                    raise ValueError(f"teacher_recipe.optim: {e}") from None
            try:
                recipe = TeacherRecipe(**kwargs)
            except ValueError as e:
                raise ValueError(f"teacher_recipe: {e}") from None
        elif recipe is None:
            recipe = TeacherRecipe()
        elif not isinstance(recipe, TeacherRecipe):
            raise ValueError(f"teacher_recipe must be None, a dict or a TeacherRecipe, got {recipe!r}")
        return recipe if self.teacher_epochs is None else dataclasses.replace(recipe, epochs=self.teacher_epochs)


def check_widths(widths: Any) -> tuple[float, ...]:
    """``widths`` as a tuple of floats: strictly increasing, in (0, 1], including 1.0."""
    out = check_numbers(widths, "width_choices", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    if 1.0 not in out or list(out) != sorted(set(out)):
        raise ValueError(f"width_choices must be strictly increasing numbers in (0, 1] that include 1.0, "
                         f"got {widths!r}; e.g. {N2N_WIDTHS}")
    return out


def check_forms(forms: Any) -> tuple[tuple[str, float | None], ...]:
    """``forms`` (registered form names, or name -> parameter, e.g. ``{"fire": 0.25}``) as (name, parameter) pairs;
    a parameter is a number in (0, 1] or None (the form's default)."""
    pairs = list(forms.items()) if isinstance(forms, Mapping) else [
        (name, None) for name in ([forms] if isinstance(forms, str) else forms)]
    out = []
    for name, param in pairs:
        if name not in FORMS:
            raise ValueError(f"unknown form {name!r} in forms; registered: {sorted(FORMS)}")
        if param is not None:
            param = check_number(param, f"forms[{name!r}]", minimum=0.0, maximum=1.0, exclusive_minimum=True)
        out.append((name, param))
    if len({name for name, _ in out}) != len(out):
        raise ValueError(f"forms names a form twice: {forms!r}")
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Task:
    """One compression problem (see the module docstring). ``teacher`` and ``data`` are None in a task read from
    a benchmark table; :meth:`live` says which."""

    teacher_spec: NetSpec
    teacher_id: str
    data_key: str
    name: str
    class_indices: tuple[int, ...] | None = None
    class_names: tuple[str, ...] = ()
    width_choices: tuple[float, ...] = N2N_WIDTHS
    kernel_shrink: bool = False
    channel_round: int = 8
    min_channels: int = 8
    facts: Mapping[str, Any] = field(default_factory=dict)
    teacher: TeacherCheckpoint | None = None
    data: DataBundle | None = None
    forms: tuple[tuple[str, float | None], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "width_choices", check_widths(self.width_choices))
        object.__setattr__(self, "forms", check_forms(self.forms))
        if self.class_indices is not None:
            object.__setattr__(self, "class_indices", tuple(int(i) for i in self.class_indices))
        if not self.decisions:
            raise TaskError(f"the {self.teacher_spec.arch} teacher offers no decision with width_choices="
                            f"{self.width_choices}, kernel_shrink={self.kernel_shrink} and forms={self.forms}")

    # -- decisions -----------------------------------------------------------------------------------------
    @cached_property
    def codec(self) -> ActionCodec:
        """The action layout: index <-> choice, masks, labels, the recorded form of choices."""
        kernel = (("kernel_1x1", None),) if self.kernel_shrink else ()
        return ActionCodec(self.width_choices, kernel + tuple(f for f in self.forms if f[0] != "kernel_1x1" or
                                                              not self.kernel_shrink))

    @property
    def action_choices(self) -> tuple[Choice, ...]:
        """Action index -> choice: "remove", then each width, then (``kernel_shrink``) each width with a 1x1
        kernel, then each width in each of ``forms``."""
        return self.codec.choices

    @property
    def action_widths(self) -> tuple[float, ...]:
        """Action index -> the width it keeps (0.0 for "remove")."""
        return self.codec.widths

    @cached_property
    def decisions(self) -> tuple[Decision, ...]:
        """The teacher's decisions that offer anything besides keeping the unit as it is, in network order."""
        return tuple(d for d in decision_table(self.teacher_spec) if sum(self.codec.allowed(d)) > 1)

    def allowed(self, d: Decision) -> list[bool]:
        """Which action indices decision ``d`` allows."""
        return self.codec.allowed(d)

    def student_spec(self, choices: Mapping[str, Choice]) -> NetSpec:
        """The student spec of ``choices`` (decision name -> "remove" | width | Keep; unlisted = kept at 1.0)
        under this task's channel rounding and class subset; choices the teacher does not allow raise
        ``ActionError``."""
        return apply_decisions(self.teacher_spec, choices, channel_round=self.channel_round,
                               min_channels=self.min_channels, class_indices=self.class_indices)

    def spec_of_actions(self, actions: Mapping[str, int]) -> NetSpec:
        """The student spec of action indices per decision name."""
        return self.student_spec({name: self.action_choices[a] for name, a in actions.items()})

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (C, H, W)."""
        return (self.teacher_spec.in_channels, *self.teacher_spec.input_size)

    # -- identity and serialisation ------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """Whether the teacher's weights and the data are loaded (a task from a table has neither)."""
        return self.teacher is not None and self.data is not None

    def require_live(self, what: str) -> tuple[TeacherCheckpoint, DataBundle]:
        """(teacher, data), or a TaskError saying that ``what`` needs them."""
        if self.teacher is None or self.data is None:
            raise TaskError(f"{what} needs the teacher's weights and the data, but task {self.name!r} has neither "
                            f"(it comes from a benchmark table); build it with load_task(TaskConfig(...))")
        return self.teacher, self.data

    def to_dict(self) -> dict[str, Any]:
        """The light part as plain JSON data (what a benchmark table carries)."""
        return {"name": self.name, "teacher_spec": self.teacher_spec.to_dict(), "teacher_id": self.teacher_id,
                "data_key": self.data_key,
                "class_indices": list(self.class_indices) if self.class_indices is not None else None,
                "class_names": list(self.class_names), "width_choices": list(self.width_choices),
                "kernel_shrink": self.kernel_shrink, "channel_round": self.channel_round,
                "min_channels": self.min_channels, "facts": json.loads(json.dumps(dict(self.facts), default=str)),
                **({"forms": [list(f) for f in self.forms]} if self.forms else {})}  # absent: keys of old tasks

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        """A task (without teacher weights or data) from :meth:`to_dict`'s output."""
        try:
            return cls(NetSpec.from_dict(d["teacher_spec"]), d["teacher_id"], d["data_key"], d["name"],
                       tuple(d["class_indices"]) if d.get("class_indices") is not None else None,
                       tuple(d.get("class_names", ())), tuple(d["width_choices"]), bool(d["kernel_shrink"]),
                       int(d["channel_round"]), int(d["min_channels"]), dict(d.get("facts", {})),
                       forms=tuple(tuple(f) for f in d.get("forms", ())))
        except (KeyError, TypeError) as e:
            raise TaskError(f"malformed task description: missing or bad {e}") from None

    def key(self) -> str:
        """A short stable hash of the light part: equal for the live task and its table twin."""
        d = self.to_dict()
        d.pop("facts")
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------- live tasks


def load_task(config: TaskConfig | None = None, *, progress: bool = True, **overrides: Any) -> Task:
    """Load the data and the teacher ``config`` names (with ``overrides`` of its fields) into a live task."""
    config = dataclasses.replace(config or TaskConfig(), **_checked(overrides))
    data = load_data(config.data_config())
    teacher = _load_teacher(config, data, progress)
    classes = _student_classes(teacher.spec.num_classes, teacher.meta, tuple(data.class_indices))
    facts = {"teacher_path": str(teacher.path), "model": teacher.meta.get("model"),
             "teacher_sidecar_val_acc": teacher.meta.get("val_acc"), "dataset": config.dataset,
             "data": data.describe()}
    return Task(teacher.spec, teacher.meta.get("sha256") or _weights_hash(teacher), data.fingerprint(),
                f"{teacher.spec.arch}/{config.dataset}" + (f"[{config.classes}]" if config.classes else ""),
                classes, tuple(data.class_names), config.width_choices, config.kernel_shrink,
                config.channel_round, config.min_channels, facts, teacher, data, config.forms)


def describe_task(config: TaskConfig) -> Task | None:
    """The light part of the task ``config`` describes, without loading data or weights: the teacher's spec from its
    checkpoint's sidecar (an "auto" teacher: one already cached or shipped), the classes from the dataset catalog.
    None when that needs the files themselves (data not in local npz files, a checkpoint without a spec in its
    sidecar, an "auto" teacher not trained yet): then :func:`load_task`. The result's ``data_key`` is empty until
    the task is loaded (:class:`~ddc_env.scoring.LiveScorer` does, with ``load=config``, on first use)."""
    info = KNOWN_DATASETS.get(config.dataset)
    data_cfg = config.data_config()
    root = ASSETS_DIR if config.data_dir is None and config.dataset in PACKAGED_DATASETS else resolve_data_dir(
        config.data_dir)
    if info is None or config.dataset == "cifar100_coarse" or not all(p.is_file() for p in npz_paths(
            config.dataset, root)):
        return None
    wanted = resolve_classes(data_cfg.classes, info.class_names)
    if isinstance(config.teacher, TeacherCheckpoint):
        spec, meta = config.teacher.spec, config.teacher.meta
    else:
        path = (_cached_auto_teacher(config) if isinstance(config.teacher, str) and config.teacher == "auto"
                else Path(config.teacher))
        if path is None or not path.is_file():
            return None
        spec, meta = read_spec(path)
        if not isinstance(meta.get("sha256"), str):
            return None
    classes = _student_classes(spec.num_classes, meta, wanted)
    return Task(spec, meta.get("sha256", ""), "", f"{spec.arch}/{config.dataset}" + (
        f"[{config.classes}]" if config.classes else ""), classes, tuple(info.class_names[i] for i in wanted),
        config.width_choices, config.kernel_shrink, config.channel_round, config.min_channels, {}, forms=config.forms)


def _cached_auto_teacher(config: TaskConfig) -> Path | None:
    """The checkpoint an "auto" teacher of ``config`` is (one shipped beside a twin's table first), if any."""
    data_cfg, recipe = config.teacher_data_config(), config.recipe()
    return (find_teacher(config.model, data_cfg, recipe=recipe, directory=PACKAGED_TEACHERS_DIR)
            or find_teacher(config.model, data_cfg, recipe=recipe))


def _checked(overrides: Mapping[str, Any]) -> dict[str, Any]:
    check_names(overrides, [f.name for f in dataclasses.fields(TaskConfig)], "task argument(s)")
    return dict(overrides)


def _weights_hash(teacher: TeacherCheckpoint) -> str:
    h = hashlib.sha256()
    for name, t in sorted(teacher.net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _load_teacher(config: TaskConfig, data: DataBundle, progress: bool) -> TeacherCheckpoint:
    """The teacher the config names, checked against the data; a checkpoint brings its own architecture (a zoo
    name is only needed to train an "auto" teacher)."""
    if isinstance(config.teacher, TeacherCheckpoint):
        ckpt = config.teacher
    elif isinstance(config.teacher, str) and config.teacher == "auto":
        ckpt = _auto_teacher(config, data, progress)
    else:
        ckpt = load_teacher(config.teacher)
    data_shape = (data.in_channels, data.image_size)
    if (ckpt.spec.in_channels, ckpt.spec.input_size) != data_shape:
        raise TaskError(f"the teacher {ckpt.path} takes {ckpt.spec.in_channels}x{ckpt.spec.input_size} inputs but "
                        f"{config.dataset!r} images are {data_shape[0]}x{data_shape[1]}")
    warn_if_near_chance(ckpt)
    return ckpt


def _auto_teacher(config: TaskConfig, data: DataBundle, progress: bool) -> TeacherCheckpoint:
    """The cached teacher of ``model`` on the whole dataset (one the package ships with a twin's table first, so the
    live env and its twin pose the same problem); trained now when that is quick (or asked for)."""
    data_cfg, recipe = config.teacher_data_config(), config.recipe()
    path = _cached_auto_teacher(config)
    if path is not None:
        return load_teacher(path)
    if config.classes is not None:
        data = load_data(data_cfg)
    from_data = {"num_classes": data.num_classes, "in_channels": data.in_channels, "input_size": data.image_size}
    kwargs = dict(config.model_kwargs)
    for key in _DATA_KWARGS:
        if key in kwargs and _as_tuple(kwargs.pop(key)) != _as_tuple(from_data[key]):
            raise TaskError(f"model_kwargs[{key!r}]={config.model_kwargs[key]!r} does not match the data "
                            f"({config.dataset}: {key}={from_data[key]!r})")
    command = (f"ddc teacher train --model {config.model} --dataset {config.dataset}"
               + (f" --data-dir {config.data_dir}" if config.data_dir else "")
               + (f" --max-train {config.max_train}" if config.max_train else "") + f" --epochs {recipe.epochs}")
    where = f"no cached {config.model} teacher for {config.dataset} in {teachers_dir()}"
    # the bound takes a moment; the probe trains a few real steps (minutes for a large model on a CPU)
    for estimate, how in ((min_training_seconds, "at least"), (estimate_training_seconds, "about")):
        seconds = estimate(config.model, data, recipe, model_kwargs=kwargs, device=config.device)
        if seconds > AUTO_TRAIN_LIMIT_SECONDS and not config.train_teacher:
            raise TaskError(f"{where}, and training one ({recipe.epochs} epochs, {len(data.train) * recipe.epochs:,} "
                            f"images) would take {how} {_duration(seconds)} here: run `{command}` first, pass "
                            f"teacher=<checkpoint path>, or pass train_teacher=True to train it now")
    warn_user(f"{where}; training one now (about {_duration(seconds)} here, measured on a few steps). It is cached "
              f"for later runs; `{command}` does the same ahead of time.")
    return train_teacher(config.model, data_cfg, recipe, model_kwargs=kwargs, device=config.device,
                         progress=progress)


def _student_classes(num_classes: int, teacher_meta: Mapping[str, Any], wanted: tuple[int, ...]
                     ) -> tuple[int, ...] | None:
    """The classifier rows a student keeps: None when it serves all the teacher's classes, else ``wanted`` (the
    data's class indices: a class subset of a teacher of the whole dataset)."""
    n = num_classes
    default = wanted if n == len(wanted) else tuple(range(n))
    teacher_classes = tuple(teacher_meta.get("class_indices", default))
    if teacher_classes == wanted:
        return None
    if teacher_classes == tuple(range(n)) and max(wanted) < n:
        return wanted
    raise TaskError(f"the teacher's classes {list(teacher_classes)} do not fit the data's classes {list(wanted)}: "
                    f"the data must have the teacher's classes, or a subset of the classes of a teacher trained on "
                    f"the whole dataset")


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"

