"""Progress bars that stay out of logs: shown only on a terminal, never when the caller asks for quiet (``--quiet``,
``progress=False``) or the environment does (``TQDM_DISABLE=1``)."""
from __future__ import annotations

import os

__all__ = ["bar_disable"]


def bar_disable(progress: bool) -> bool | None:
    """tqdm's ``disable`` argument for a bar the caller wants when ``progress``: True when it is not wanted or
    ``$TQDM_DISABLE`` is set, else None (tqdm then shows it only when its output is a terminal). Passing
    ``disable=not progress`` instead would show bars in redirected logs and override ``$TQDM_DISABLE``."""
    if not progress or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false"):
        return True
    return None
