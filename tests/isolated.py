"""Run Python code in a fresh interpreter under a timeout, killing its whole process group (forked workers included)
when the time runs out, so a hang fails the test instead of blocking the suite."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_isolated(args: Sequence[str], *, timeout: float, cwd: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (``args[0]`` an executable; ``["-c", code]`` runs code in this interpreter) in a new session;
    on timeout its process group is killed and an AssertionError shows what it printed so far."""
    argv = [sys.executable, *args] if args[0] in ("-c", "-m") else list(args)
    proc = subprocess.Popen(argv, cwd=cwd, env=None if env is None else dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(f"{argv[1:3]} did not finish in {timeout:.0f} s (hung?)\nstdout:\n{out[-2000:]}\n"
                             f"stderr:\n{err[-3000:]}") from None
    finally:
        _kill_group(proc.pid)  # workers it left behind
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
