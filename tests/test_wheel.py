"""``pip install ddc-env`` runs what the README shows: the wheel is built from a copy of the source (offline) without a
single build warning, holds only this project's top-level package with its configs, assets, tables and ``py.typed``,
and, installed into a fresh venv
that reuses this environment's dependencies (a ``.pth`` line, as the development venv is made), runs the ``ddc``
commands from an empty folder with packaged config names."""
from __future__ import annotations

import json
import os
import re
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
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built by pip from a copy of the source tree (nothing written into the repository), and what the
    build printed (pip -v shows the build backend's output)."""
    version = tuple(int(x) for x in metadata.version("setuptools").split(".")[:2])
    assert version >= (77, 0), "building the wheel offline needs setuptools>=77 here: pip install 'ddc-env[test]'"
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(REPO / name, src / name if src.exists() else _mkdir(src) / name)
    for folder in (*INSTALLED_AS, "build_backend"):
        shutil.copytree(REPO / folder, src / folder, ignore=SKIP)
    # PYTHONDONTWRITEBYTECODE makes distutils print "warning: build_py: byte-compiling is disabled": the shell's
    # setting, not the project's
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-v", "-w", str(root / "dist"), str(src)], check=True, timeout=120, env=env,
                            capture_output=True, text=True)
    [built] = (root / "dist").glob("ddc_env-*.whl")
    return built, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(build: tuple[Path, str]) -> Path:
    """The built wheel."""
    return build[0]


def test_the_build_prints_no_warning(build: tuple[Path, str]):
    """setuptools warns about every folder of data files left out of ``packages`` ("Package would be ignored"): the
    packaging declares them all, so the build (and ``make install``) is quiet."""
    warnings = [line.strip() for line in build[1].splitlines()
                if re.search(r"warning|would be ignored|ambiguous", line, re.IGNORECASE)]
    assert warnings == []


def test_an_editable_build_prints_nothing(tmp_path: Path):
    """``pip install -e .`` (``make install``) runs the backend's ``build_editable`` hook: it prints no warning and
    no notice (setuptools' "Editable installation" notice is the one the project's backend leaves out)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'build_backend')!r}); import ddc_build; "
            f"print(ddc_build.build_editable({str(tmp_path)!r}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    [built] = tmp_path.glob("ddc_env-*.whl")
    assert result.stdout.strip().endswith(built.name)
    noise = [line for line in result.stderr.splitlines()
             if re.search(r"warning|notice|careful|editable installation", line, re.IGNORECASE)]
    assert noise == []


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
            "ddc_env/assets/mnist_sample_test.npz", "ddc_env/configs/baselines/lenet5_mnist.yaml",
            "ddc_env/configs/bench/lenet5_mnist/maskable_ppo.yaml",
            "ddc_env/configs/bench/resnet18_cifar10/maskable_ppo.yaml", "ddc_env/tables.py",
            "ddc_env/tables/lenet5_mnist.json.gz", "ddc_env/tables/lenet5_mnist.teacher.pt",
            "ddc_env/tables/resnet18_cifar10.json.gz", "ddc_env/agents/sb3.py",
            "ddc_env/baselines/common.py"} <= names


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
    twin = ("import gymnasium as gym, ddc_env, ddc_env.tables; env = gym.make('DDC-Bench-LeNet5-MNIST'); "
            "env.reset(seed=0); print(ddc_env.tables.__file__)")
    assert run("python", "-c", twin).strip().endswith("ddc_env/tables.py")  # the module; its folder is the tables
    smoke = ["env_kwargs.fidelity=smoke", "env_kwargs.teacher_epochs=1", "env_kwargs.latency=flops"]
    run("ddc", "search", "--config", "lenet5_mnist_random", "--episodes", "2", "--out", "search", "--quiet",
        "--set", *smoke)
    assert json.loads((work / "search" / "summary.json").read_text())["episodes"] == 2
    run("ddc", "baseline", "uniform", "--config", "lenet5_mnist", "--out", "uniform", "--quiet",
        "--set", *smoke, "baselines.uniform.widths=[0.5]")
    assert json.loads((work / "uniform" / "summary.json").read_text())["kind"] == "baseline"
    assert sorted(p.name for p in work.iterdir()) == ["search", "uniform"]
