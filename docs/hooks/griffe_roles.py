"""Griffe extension for the site: the library's docstrings use Sphinx roles (``:class:`ddc_env.x.Y```) and literal
blocks (``Example::``); the site renders docstrings as Markdown, so a role becomes a code span (``~`` keeps the last
name, as Sphinx shows it) and ``::`` ending a line becomes ``:``."""
from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"::$", re.MULTILINE)


def _code_span(match: re.Match[str]) -> str:
    """The code span of one role: its target, or only the target's last name after ``~``."""
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def markdown_docstring(text: str) -> str:
    """``text`` with Sphinx roles as code spans and ``::`` line ends as ``:``."""
    return _LITERAL.sub(":", _ROLE.sub(_code_span, text))


class SphinxRoles(griffe.Extension):
    """Rewrites every loaded object's docstring with :func:`markdown_docstring`."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
