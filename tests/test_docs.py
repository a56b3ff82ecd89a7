"""The documentation holds: the site builds with ``mkdocs build --strict`` offline (its references generated from the
code), the Python examples of every page in ``docs/`` and of the README run, each page's blocks in order in a fresh
module, and every ``ddc`` command line they show parses with today's parser. A Python block that needs data, a GPU
or a long run follows a line ``<!-- no-test: why -->`` and is skipped."""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
NO_TEST = re.compile(r"^<!-- no-test: (\S.*?) -->$")
SITE_PACKAGES = ("mkdocs", "material", "mkdocstrings_handlers.python")
UNREACHABLE = "http://127.0.0.1:9"  # a closed local port: any download the build tries fails


@dataclass(frozen=True)
class Example:
    """One ```python block: where it starts, its code, and why it is skipped (None: it runs)."""

    page: Path
    line: int
    code: str
    skip: str | None


def examples(page: Path) -> list[Example]:
    """The ```python blocks of ``page`` in order, each with the reason of a ``<!-- no-test: why -->`` line right
    before its fence, if any."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = lines.index("```", start)
            marker = NO_TEST.match(lines[i - 1].strip()) if i else None
            found.append(Example(page, start + 1, "\n".join(lines[start:end]), marker.group(1) if marker else None))
            i = end
        i += 1
    return found


ALL = [example for page in PAGES for example in examples(page)]
RUNNABLE = sorted({e.page for e in ALL if e.skip is None})


def commands(page: Path) -> list[tuple[int, str]]:
    """(line, command) of every ``ddc`` command in the shell blocks (```bash or bare fences) of ``page``, continued
    lines joined and trailing comments dropped; lines using shell variables (``$b`` in a loop) are left out."""
    found, inside, joined = [], False, ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            inside = not inside and line.strip() in ("```", "```bash")
            continue
        if not inside:
            continue
        joined += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if line.endswith("\\"):
            continue
        command, joined = re.split(r"\s+#\s", joined)[0], ""
        if command.startswith("ddc ") and "$" not in command:
            found.append((number, command))
    return found


def _name(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def test_most_examples_run_and_every_skip_says_why():
    skipped = [e for e in ALL if e.skip is not None]
    markers = sum(1 for page in PAGES for line in page.read_text(encoding="utf-8").splitlines()
                  if line.startswith("<!-- no-test"))
    assert markers == len(skipped), "a <!-- no-test: why --> line must stand right before a ```python fence"
    assert len(ALL) >= 10 and len(skipped) <= len(ALL) // 4, (
        f"{len(ALL)} examples, {len(skipped)} skipped: " + "; ".join(f"{_name(e.page)}:{e.line} {e.skip}"
                                                                    for e in skipped))


@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
@pytest.mark.filterwarnings("ignore:.*Using the latest versioned environment `DDC-")  # as ddc_env.registration does
def test_the_examples_of_a_page_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every runnable block of ``page``, in order, in one fresh module, from an empty folder."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("docs_example_" + re.sub(r"\W", "_", _name(page)))
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses defined in an example look it up
    for example in examples(page):
        if example.skip is None:
            exec(compile(example.code, f"{page}:{example.line}", "exec"), module.__dict__)


def test_every_ddc_command_shown_parses():
    """The commands the pages show still exist with those flags (the parser only: nothing runs)."""
    from ddc_env.cli import build_parser

    shown = [(page, number, command) for page in PAGES for number, command in commands(page)]
    failures = []
    for page, number, command in shown:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except (Exception, SystemExit) as e:  # ddc's UsageError, wherever the CLI keeps it
            failures.append(f"{_name(page)}:{number}: {command}: {e}")
    assert len(shown) >= 20 and not failures, "\n".join(failures)


def _site_packages_missing() -> list[str]:
    return [name for name in SITE_PACKAGES if importlib.util.find_spec(name.split(".")[0]) is None
            or importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built by ``mkdocs build --strict`` with every download pointed at a closed local port."""
    missing = _site_packages_missing()
    if missing:
        pytest.skip(f"the docs packages are not installed ({', '.join(missing)}): pip install 'ddc-env[docs]'")
    out = tmp_path_factory.mktemp("site")
    proxies = {name: UNREACHABLE for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    env = {**{k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}, **proxies,
           "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(out)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out


def _reference_hook() -> types.ModuleType:
    """docs/hooks/reference.py, the hook that generates the reference parts of the site."""
    spec = importlib.util.spec_from_file_location("docs_reference_hook", REPO / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_offline_with_the_generated_references(site: Path):
    from ddc_env import ENV_IDS
    from ddc_env.cli import build_parser

    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    commands = [line for line, _, _ in _reference_hook().subcommands(build_parser(), "ddc")]
    assert {"ddc benchmark", "ddc teacher train", "ddc table build"} <= set(commands)  # subcommands' subcommands
    assert all(f'id="{"-".join(line.split())}"' in cli for line in commands)  # a section per command
    environment = (site / "environment" / "index.html").read_text(encoding="utf-8")
    assert all(env_id in environment for env_id in ENV_IDS)
    assert "Action Space" in environment and "n2n_paper" in environment  # DDCEnv's docstring, the fidelities
    assert (site / "index.html").is_file()  # the README
    leaderboard = (site / "results" / "leaderboard" / "index.html").read_text(encoding="utf-8")
    assert "repo/bench/leaderboard/lenet5_mnist/anytime_evaluations.png" in leaderboard
    assert (site / "repo" / "bench" / "leaderboard" / "lenet5_mnist" / "anytime_evaluations.png").is_file()
    external = {m for page in site.rglob("*.html")
                for m in re.findall(r"(?:src|href)=\"(https?://[^\"/]+)", page.read_text(encoding="utf-8"))}
    assert not external & {"https://fonts.googleapis.com", "https://fonts.gstatic.com"}, external
