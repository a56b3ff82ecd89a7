"""Torch in forked processes: one intra-op thread, so subprocess vector envs never deadlock.

torch's CPU thread pool on Linux is GNU OpenMP (libgomp), which is not fork-safe. ``fork()`` copies only the calling
thread, yet the child's libgomp still counts the parent's pool threads as its own: the child's first parallel torch
op waits forever at a barrier for threads that do not exist. Gymnasium's ``AsyncVectorEnv`` (default start method
``fork`` on Linux before Python 3.14) builds one env in the parent to read the spaces (data loading, teacher
evaluation: parallel torch ops that start the pool), then forks its workers, which hung in their first op.

Importing ``ddc_env`` registers :func:`_one_thread` to run in every forked child: torch ops there use one intra-op
thread (as PyTorch's DataLoader workers do) and never enter the broken pool; parallelism comes from the processes.
A child that wants more threads may call ``torch.set_num_threads(n)`` only if its parent never ran a parallel torch
op; else use the "spawn" or "forkserver" start method (SB3's ``SubprocVecEnv`` default).
"""
from __future__ import annotations

import functools
import os

import torch

__all__ = ["guard_forks"]


def _one_thread() -> None:
    torch.set_num_threads(1)


@functools.cache
def guard_forks() -> None:
    """Make every child this process forks from now on run torch with one intra-op thread (once per process)."""
    if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
        os.register_at_fork(after_in_child=_one_thread)
