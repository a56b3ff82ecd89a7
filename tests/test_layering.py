"""The library stands alone: ``import ddc_env`` and a live env pull in neither the agents, the baselines, the lab, the
CLI nor the tool-only packages, and the source keeps the arrows one-way (an AST walk over every module, lazy imports
included): library -> nothing above it; agents, baselines -> library; lab (``ddc_env.lab``: searches, benchmarks,
run folders, reports) -> library, agents, baselines; cli -> all."""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from isolated import run_isolated

REPO = Path(__file__).resolve().parents[1]
# installed package -> its folder in the repository (pyproject.toml's package-dir)
ROOTS = {"ddc_env": REPO / "ddc_env", "ddc_env.agents": REPO / "agents", "ddc_env.baselines": REPO / "baselines"}
TOOL_ONLY = ("stable_baselines3", "sb3_contrib", "optuna", "cmaes", "matplotlib", "tensorboard",
             "torch.utils.tensorboard", "rliable")
ABOVE_LIBRARY = ("ddc_env.agents", "ddc_env.baselines", "ddc_env.lab", "ddc_env.cli", "agents", "baselines")
# what each layer must never import
FORBIDDEN = {
    "library": ABOVE_LIBRARY + TOOL_ONLY,
    "ddc_env.agents": ("ddc_env.cli", "ddc_env.lab", "ddc_env.baselines", "baselines", "agents"),
    "ddc_env.baselines": ("ddc_env.cli", "ddc_env.lab", "ddc_env.agents", "agents", "baselines"),
    "ddc_env.lab": ("ddc_env.cli", "agents", "baselines"),
}


def test_import_and_a_live_env_load_nothing_above_the_library(synth_teacher, synth_dir):
    kwargs = {"teacher": str(synth_teacher.path), "dataset": "synth", "data_dir": str(synth_dir),
              "fidelity": "smoke", "latency": "flops", "device": "cpu"}
    code = f"""
import json, sys
import gymnasium as gym
import ddc_env
env = gym.make("DDC-LeNet5-MNIST", **json.loads({json.dumps(json.dumps(kwargs))}))
env.reset(seed=0)
terminated = False
while not terminated:
    _, _, terminated, _, info = env.step(env.action_space.sample(mask=env.unwrapped.action_masks().astype("int8")))
print(info["status"])
print(json.dumps(sorted(sys.modules)))
"""
    result = run_isolated(["-c", code], timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    status, modules = result.stdout.strip().splitlines()[-2:]
    assert status == "ok"
    loaded = [m for m in json.loads(modules) if any(m == f or m.startswith(f + ".") for f in ABOVE_LIBRARY + TOOL_ONLY)]
    assert loaded == []


def _modules() -> list[tuple[str, Path]]:
    """(dotted module name as installed, source file) of every module of the package."""
    out = []
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            out.append((name, path))
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (absolute names; ``from a import b`` counts a and a.b; string
    arguments of ``importlib.import_module``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(str(node.args[0].value))
    return found


def _layer(name: str) -> str | None:
    if name == "ddc_env.__main__" or name == "ddc_env.cli" or name.startswith("ddc_env.cli."):
        return None  # the command layer may import everything
    for layer in ("ddc_env.agents", "ddc_env.baselines", "ddc_env.lab"):
        if name == layer or name.startswith(layer + "."):
            return layer
    return "library"


def test_imports_point_one_way():
    modules = _modules()
    assert len(modules) > 40 and {"ddc_env.agents.sb3", "ddc_env.lab.benchmark.run"} <= {n for n, _ in modules}
    wrong = []
    for name, path in modules:
        layer = _layer(name)
        if layer is None:
            continue
        for imported in sorted(_imports(name, path)):
            if any(imported == f or imported.startswith(f + ".") for f in FORBIDDEN[layer]):
                wrong.append(f"{path.relative_to(REPO)} ({layer}) imports {imported}")
    assert wrong == []


@pytest.mark.parametrize("source, expected", [
    ("from ..agents import AGENTS", {"ddc_env.agents", "ddc_env.agents.AGENTS"}),
    ("from . import cli", {"ddc_env.data", "ddc_env.data.cli"}),
    ("import stable_baselines3.common", {"stable_baselines3.common"}),
    ("def f():\n    importlib.import_module('ddc_env.cli.main')", {"ddc_env.cli.main"}),
])
def test_the_import_walk_sees_relative_lazy_and_dynamic_imports(tmp_path, source, expected):
    path = tmp_path / "sources.py"
    path.write_text(source)
    assert _imports("ddc_env.data.sources", path) == expected


def test_the_cli_imports_at_module_level_only():
    """``ddc_env/cli/`` parses arguments and calls the lab: it needs no function-level import (no import cycle to
    work around)."""
    nested = []
    for name, path in _modules():
        if not name.startswith("ddc_env.cli"):
            continue
        for function in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested += [f"{path.relative_to(REPO)}:{node.lineno} in {function.name}()"
                           for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert nested == []
