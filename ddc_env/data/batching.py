"""Mini-batches by index over in-memory tensors: no DataLoader, no worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .errors import DataError


def batch_indices(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                  drop_last: bool = False, device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """Index tensors (int64, on ``device``) covering ``range(n)`` once, shuffled by ``generator`` if asked."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer; got {batch_size!r}")
    if shuffle:
        if generator is None:
            raise DataError("shuffle=True needs a torch.Generator (generator=...) so batches are reproducible")
        order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    else:
        order = torch.arange(n, device=device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def iterate_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool,
                    generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(x[idx], y[idx], idx)``; ``idx`` (on ``x``'s device) lets a loop look up per-sample caches."""
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} samples but y has {len(y)}; they must match")
    for idx in batch_indices(len(x), batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                             device=x.device):
        yield x[idx], y[idx.to(y.device)], idx
