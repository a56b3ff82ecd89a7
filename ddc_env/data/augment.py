"""Batched, on-device normalisation and augmentation of uint8 NCHW image tensors (no per-image loops)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import DataError

PAD_MODES = ("reflect", "replicate", "constant")


def normalize(x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor, *,
              dtype: torch.dtype = torch.float32, channels_last: bool = False) -> torch.Tensor:
    """uint8 NCHW -> ``(x / 255 - mean) / std`` per channel, computed in fp32 and returned as ``dtype``."""
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise DataError(f"normalize expects a uint8 NCHW tensor; got dtype {x.dtype}, shape {tuple(x.shape)}")
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    if m.shape[1] != x.shape[1] or s.shape[1] != x.shape[1]:
        raise DataError(f"mean/std have {m.shape[1]}/{s.shape[1]} values for {x.shape[1]} channels; "
                        f"give one per channel")
    out = x.to(torch.float32).div_(255.0).sub_(m).div_(s).to(dtype)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def sample_crop_flip(n: int, generator: torch.Generator, pad: int = 4,
                     flip: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample shifts ``dy, dx`` uniform in ``[-pad, pad]`` and flip flags (p=0.5, all False when
    ``flip`` is off), drawn in that order from ``generator`` on its device."""
    dev = generator.device
    dy = torch.randint(-pad, pad + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(-pad, pad + 1, (n,), generator=generator, device=dev)
    flipped = (torch.randint(0, 2, (n,), generator=generator, device=dev) == 1 if flip
               else torch.zeros(n, dtype=torch.bool, device=dev))
    return dy, dx, flipped


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flipped: torch.Tensor,
              pad_mode: str = "reflect") -> torch.Tensor:
    """Output pixel (i, j) of image k is input pixel (i + dy[k], j + dx[k]) of the padded image (j mirrored
    when ``flipped[k]``): a random crop after padding, done as one gather over the batch."""
    if pad_mode not in PAD_MODES:
        raise DataError(f"pad_mode {pad_mode!r} is unknown; allowed: {', '.join(PAD_MODES)}")
    n, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev) + dy.to(dev)[:, None]  # (N, H) source rows, may fall outside the image
    cols = torch.arange(w, device=dev) + dx.to(dev)[:, None]  # (N, W)
    cols = torch.where(flipped.to(dev)[:, None], cols.flip(1), cols)
    valid = None
    if pad_mode == "reflect":
        rows, cols = rows.abs(), cols.abs()
        rows = torch.where(rows > h - 1, 2 * (h - 1) - rows, rows)
        cols = torch.where(cols > w - 1, 2 * (w - 1) - cols, cols)
    else:
        if pad_mode == "constant":
            valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    idx = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    out = x.reshape(n, c, h * w).gather(2, idx).reshape(n, c, h, w)
    return out if valid is None else out.masked_fill_(~valid[:, None], 0)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True,
            pad_mode: str = "reflect") -> torch.Tensor:
    """Random crop after ``pad``-pixel padding plus optional horizontal flip, for a whole NCHW batch on its
    device; deterministic given ``generator`` (turn ``flip`` off for digits)."""
    if x.ndim != 4:
        raise DataError(f"augment expects an NCHW batch; got shape {tuple(x.shape)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise DataError(f"pad must be a non-negative integer; got {pad!r}")
    if pad_mode == "reflect" and pad >= min(x.shape[2], x.shape[3]):
        raise DataError(f"reflect padding needs pad < image size; got pad={pad} for {tuple(x.shape[2:])} images")
    dy, dx, flipped = sample_crop_flip(len(x), generator, pad, flip)
    return crop_flip(x, dy, dx, flipped, pad_mode)
