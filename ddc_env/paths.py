"""Where the package keeps its files, and atomic writes: nothing half-written on disk, ever."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def ddc_home() -> Path:
    """The package's cache root: ``$DDC_HOME``, default ``~/.cache/ddc_env``."""
    return Path(os.environ.get("DDC_HOME") or Path.home() / ".cache" / "ddc_env").expanduser()


PACKAGED_TEACHERS_DIR = Path(__file__).resolve().parent / "tables"  # teachers shipped beside the twins' tables


def teachers_dir() -> Path:
    """Where trained teachers are cached: ``<ddc_home>/teachers``."""
    return ddc_home() / "teachers"


@contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success it is flushed, fsynced and moved onto
    ``path`` with ``os.replace``; on any error it is deleted and ``path`` is left as it was."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_writer(path, "w") as f:
        f.write(text)
