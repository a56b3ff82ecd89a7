"""MkDocs hook: a line ``<!-- reference: NAME -->`` in a page becomes reference text generated from the code when the
site is built, so no table of the library is kept by hand (and on GitHub, where the page renders too, the line is
invisible). NAME is one of :data:`GENERATORS`: the ``ddc`` command line (every subcommand the parser has, however
deep), the env ids with their presets, the env and twin arguments with their defaults, the fidelity presets, the
agents, the baselines, and ``docstring OBJECT``: an object's docstring, rendered by mkdocstrings."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import importlib.util
from pathlib import Path

import gymnasium as gym

_MARKER = re.compile(r"^<!-- reference: ([a-z-]+)(?: ([\w.]+))? -->$", re.MULTILINE)
REPO = Path(__file__).resolve().parents[2]
HELP_WIDTH = 100  # columns of the generated --help text


def _cell(value: Any) -> str:
    """A table cell: ``repr(value)`` as inline code (a pipe in a code span does not split the cell)."""
    return f"`{value!r}`"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- ddc (argparse)


@contextlib.contextmanager
def _placeholder_home() -> Iterator[None]:
    """``$DDC_HOME`` set to the literal text ``$DDC_HOME`` meanwhile, so help texts that show a default path under it
    read ``$DDC_HOME/...`` instead of the building machine's home."""
    saved = os.environ.get("DDC_HOME")
    os.environ["DDC_HOME"] = "$DDC_HOME"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["DDC_HOME"]
        else:
            os.environ["DDC_HOME"] = saved


def subcommands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(command line, one-line help, parser) of every subcommand below ``parser``, depth first, each parser once
    (aliases share their parser)."""
    seen: set[int] = set()
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            yield f"{path} {name}", helps.get(name, ""), sub
            yield from subcommands(sub, f"{path} {name}")


def _help(parser: argparse.ArgumentParser) -> str:
    """``parser``'s ``--help`` text at :data:`HELP_WIDTH` columns."""
    formatter_class = parser.formatter_class
    parser.formatter_class = functools.partial(formatter_class, width=HELP_WIDTH)
    try:
        return parser.format_help().rstrip()
    finally:
        parser.formatter_class = formatter_class


def cli() -> str:
    """A table of every ``ddc`` command, then one section per command with its ``--help``."""
    from ddc_env.cli import build_parser

    with _placeholder_home():
        root = build_parser()
        commands = list(subcommands(root, root.prog))
        sections = [f"{'#' * (1 + line.count(' '))} `{line}` {{ #{_anchor(line)} }}\n\n{what}\n\n"
                    f"```text\n{_help(parser)}\n```" for line, what, parser in commands]
    overview = _table(("command", "what"), [(f"[`{line}`](#{_anchor(line)})", what) for line, what, _ in commands])
    return "\n\n".join([overview, f"```text\n{_help(root)}\n```", *sections])


def _anchor(command: str) -> str:
    """The anchor of a command's section: its words joined by dashes."""
    return "-".join(command.split())


# --------------------------------------------------------------------------------------------- the env, its ids


def ids() -> str:
    """Every registered DDC id: live env or twin, and its preset arguments."""
    from ddc_env import registration

    rows = []
    for env_id in registration.ENV_IDS:
        spec = gym.registry[env_id]
        kind = "live (`DDCEnv`)" if registration.is_live(env_id) else "twin (`DDCBenchEnv`)"
        preset = ", ".join(f"`{k}={v!r}`" for k, v in spec.kwargs.items())
        rows.append((f"`{env_id}`", kind, preset))
    return _table(("id", "env", "preset (keyword arguments override it)"), rows)


def _defaults(config: type) -> str:
    """A table of a config dataclass's fields: name, type, default."""
    rows = []
    for f in dataclasses.fields(config):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        rows.append((f"`{f.name}`", f"`{f.type}`", _cell(default)))
    return _table(("argument", "type", "default (before the id's preset)"), rows)


def env_arguments() -> str:
    """The live env's arguments (``EnvConfig``) with their defaults."""
    from ddc_env.env import EnvConfig

    return _defaults(EnvConfig)


def twin_arguments() -> str:
    """The twins' arguments (``BenchConfig``) with their defaults."""
    from ddc_env.twins import BenchConfig

    return _defaults(BenchConfig)


def fidelities() -> str:
    """The fidelity presets side by side, one row per ``Fidelity`` field."""
    from ddc_env.distill import FIDELITIES, Fidelity

    names = list(FIDELITIES)
    rows = [(f"`{f.name}`", *(_cell(getattr(FIDELITIES[n], f.name)) for n in names))
            for f in dataclasses.fields(Fidelity) if f.name != "name"]
    return _table(("field", *(f"`{n}`" for n in names)), rows)


# ------------------------------------------------------------------------------------------- agents, baselines


def _registry(entries: Mapping[str, Any]) -> str:
    """A table of an agent or baseline registry: name, what it is, the module that runs it."""
    rows = [(f"`{name}`", entry.summary, f"`{entry.module}`") for name, entry in entries.items()]
    return _table(("name", "what", "module"), rows)


def agents() -> str:
    """The agents ``ddc search --agent`` and ``ddc benchmark --agents`` know."""
    from ddc_env.agents import AGENTS

    return _registry(AGENTS)


def baselines() -> str:
    """The baselines ``ddc baseline NAME`` knows."""
    from ddc_env.baselines import BASELINES

    return _registry(BASELINES)


# ------------------------------------------------------------------------------------------------- docstrings


def docstring(installed: str) -> str:
    """mkdocstrings' directive for the object ``installed`` (its name as installed, e.g. ``ddc_env.agents.sb3``),
    pointed at its module's source in this repository, where ``agents/`` is what installs as ``ddc_env.agents``:
    mkdocstrings reads sources by their path, and the heading shows the installed name."""
    parts = installed.split(".")
    for end in range(len(parts), 0, -1):
        with contextlib.suppress(ModuleNotFoundError):
            spec = importlib.util.find_spec(".".join(parts[:end]))
            if spec is not None and spec.origin:
                break
    else:
        raise ValueError(f"<!-- reference: docstring {installed} -->: no module of that name")
    source = Path(spec.origin).resolve().relative_to(REPO).with_suffix("").parts
    module = ".".join(source[:-1] if source[-1] == "__init__" else source)
    return f"::: {'.'.join([module, *parts[end:]])}\n    options:\n      heading: \"{installed}\""


GENERATORS: dict[str, Callable[..., str]] = {
    "cli": cli, "ids": ids, "env-arguments": env_arguments, "twin-arguments": twin_arguments,
    "fidelities": fidelities, "agents": agents, "baselines": baselines, "docstring": docstring,
}


def expand(markdown: str) -> str:
    """``markdown`` with every reference marker replaced by its generated text; an unknown name is an error."""
    def generate(match: re.Match[str]) -> str:
        name, argument = match.groups()
        if name not in GENERATORS:
            raise ValueError(f"<!-- reference: {name} -->: unknown reference; known: {', '.join(GENERATORS)}")
        return GENERATORS[name](*([argument] if argument else []))

    return _MARKER.sub(generate, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs event: expand the page's reference markers."""
    return expand(markdown)
