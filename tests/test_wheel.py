"""``pip install ddc-env`` runs what the README shows: the wheel is built from a copy of the source (offline), holds
only this project's top-level package with its configs, assets and ``py.typed``, and, installed into a fresh venv
that reuses this environment's dependencies (a ``.pth`` line, as the development venv is made), runs the ``ddc``
commands from an empty folder with packaged config names."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import ddc_env
from isolated import run_isolated

REPO = Path(__file__).resolve().parents[1]
# repository folder -> where it installs (pyproject.toml's package-dir)
INSTALLED_AS = {"ddc_env": "ddc_env", "agents": "ddc_env/agents", "baselines": "ddc_env/baselines",
                "configs": "ddc_env/configs"}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built by pip from a copy of the source tree (nothing written into the repository)."""
    version = tuple(int(x) for x in metadata.version("setuptools").split(".")[:2])
    assert version >= (77, 0), "building the wheel offline needs setuptools>=77 here: pip install 'ddc-env[test]'"
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name if src.exists() else _mkdir(src) / name)
    for folder in INSTALLED_AS:
        shutil.copytree(REPO / folder, src / folder, ignore=SKIP)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(root / "dist"), str(src)], check=True, timeout=120)
    [built] = (root / "dist").glob("ddc_env-*.whl")
    return built


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_the_wheel_holds_only_ddc_env_with_its_data(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist_info = f"ddc_env-{ddc_env.__version__}.dist-info"
        assert {n.split("/")[0] for n in names} == {"ddc_env", dist_info}
        assert z.read(f"{dist_info}/top_level.txt").decode().split() == ["ddc_env"]
        assert "ddc = ddc_env.cli:main" in z.read(f"{dist_info}/entry_points.txt").decode()
    expected = {f"{INSTALLED_AS[folder]}/{p.relative_to(REPO / folder).as_posix()}"
                for folder in INSTALLED_AS for p in (REPO / folder).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert expected - names == set()  # every source file ships: modules, configs, assets, tables, py.typed
    assert {"ddc_env/py.typed", "ddc_env/configs/lenet5_mnist_random.yaml", "ddc_env/assets/mnist_sample_train.npz",
            "ddc_env/configs/baselines/lenet5_mnist.yaml", "ddc_env/agents/sb3.py", "ddc_env/baselines/common.py"} <= names


def _fresh_venv(root: Path, wheel: Path) -> Path:
    """A venv at ``root`` with the wheel installed and this environment's site-packages on its path; its bin/."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=60)
    python = root / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    deps = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    Path(purelib, "deps.pth").write_text("\n".join(dict.fromkeys([ours, *deps])) + "\n")
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--quiet",
                    "--disable-pip-version-check", str(wheel)], check=True, timeout=120)
    return root / "bin"


def test_the_installed_wheel_runs_the_readme_commands_from_an_empty_folder(wheel: Path, tmp_path: Path):
    bin_dir = _fresh_venv(tmp_path / "venv", wheel)
    work = _mkdir(tmp_path / "empty")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "DDC_HOME": str(tmp_path / "home")}

    def run(*argv: str, timeout: float = 120) -> str:
        result = run_isolated([str(bin_dir / argv[0]), *argv[1:]], timeout=timeout, cwd=work, env=env)
        assert result.returncode == 0, f"{argv}:\n{result.stderr[-3000:]}"
        return result.stdout

    assert run("ddc", "--version").strip() == f"ddc-env {ddc_env.__version__}"
    assert "quickstart" in run("python", "-m", "ddc_env", "--help")
    where = json.loads(run("python", "-c", "import json, ddc_env, ddc_env.configs; "
                                           "print(json.dumps([ddc_env.__file__, ddc_env.configs.__file__]))"))
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where)  # the wheel's copy, not the source tree
    smoke = ["env_kwargs.fidelity=smoke", "env_kwargs.teacher_epochs=1", "env_kwargs.latency=flops"]
    run("ddc", "search", "--config", "lenet5_mnist_random", "--episodes", "2", "--out", "search", "--quiet",
        "--set", *smoke)
    assert json.loads((work / "search" / "summary.json").read_text())["episodes"] == 2
    run("ddc", "baseline", "uniform", "--config", "lenet5_mnist", "--out", "uniform", "--quiet",
        "--set", *smoke, "baselines.uniform.widths=[0.5]")
    assert json.loads((work / "uniform" / "summary.json").read_text())["kind"] == "baseline"
    assert sorted(p.name for p in work.iterdir()) == ["search", "uniform"]
