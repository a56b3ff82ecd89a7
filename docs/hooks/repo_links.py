"""MkDocs hook: pages link as they do on GitHub, relative to their own file, and the site follows.

- The README is the site's home page (``index.md``), read from the repository root.
- A file of the repository outside ``docs/`` that a page links to (a plot under ``bench/leaderboard/``,
  ``LEADERBOARD.md``, a results file) is published under ``repo/`` at its repository path, and so is whatever a
  published Markdown file links to in turn; nothing is copied into ``docs/``.
- Every relative link is resolved against the file the page was read from and rewritten to where its target is in
  the site (``docs/x.md`` from the README becomes ``x.md``; ``../../LEADERBOARD.md`` from ``docs/results/`` becomes
  ``../repo/LEADERBOARD.md``). A link to nothing in the repository is left alone, for MkDocs to report.
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

PUBLISHED = "repo"  # where repository files outside docs/ appear in the site
_LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")  # [text](target "title") and ![alt](target)


def _repo(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _target(source: Path, link: str, repo: Path) -> Path | None:
    """The repository file a relative ``link`` in ``source`` points to, or None (a URL, an anchor, outside)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith(("#", "/")):
        return None
    path = (source.parent / link.split("#", 1)[0]).resolve()
    return path if path.is_file() and path.is_relative_to(repo) else None


def _site_path(path: Path, repo: Path, docs: Path) -> str:
    """Where a repository file is in the site: the README is the home page, a file below docs/ is where it is,
    any other below :data:`PUBLISHED`."""
    if path == repo / "README.md":
        return "index.md"
    if path.is_relative_to(docs):
        return path.relative_to(docs).as_posix()
    return f"{PUBLISHED}/{path.relative_to(repo).as_posix()}"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """MkDocs event: add the README as ``index.md`` and every repository file outside docs/ that a page links to."""
    repo, docs = _repo(config), Path(config.docs_dir).resolve()
    readme = repo / "README.md"
    files.append(File.generated(config, _site_path(readme, repo, docs), abs_src_path=str(readme)))
    queue = [Path(f.abs_src_path) for f in files.documentation_pages() if f.abs_src_path]
    published = {readme}
    while queue:
        source = queue.pop()
        for match in _LINK.finditer(source.read_text(encoding="utf-8")):
            path = _target(source, match.group(2), repo)
            if path is None or path.is_relative_to(docs) or path in published:
                continue
            published.add(path)
            files.append(File.generated(config, _site_path(path, repo, docs), abs_src_path=str(path)))
            if path.suffix == ".md":
                queue.append(path)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, **kwargs: Any) -> str:
    """MkDocs event: rewrite the page's relative links to where their targets are in the site."""
    repo, docs = _repo(config), Path(config.docs_dir).resolve()
    source = Path(page.file.abs_src_path)
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        opening, link, closing = match.groups()
        path = _target(source, link, repo)
        if path is None:
            return match.group(0)
        fragment = link[len(link.split("#", 1)[0]):]
        return opening + posixpath.relpath(_site_path(path, repo, docs), here or ".") + fragment + closing

    return _LINK.sub(rewrite, markdown)
