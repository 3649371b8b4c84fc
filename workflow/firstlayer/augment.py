"""Augmentation of a training batch on its device: random crop of the reflect-padded image and horizontal flip,
two gathers per batch, drawn from the run's own generator."""

from __future__ import annotations

import torch

#: Pixels of reflected border for the random-crop augmentation: a translation of up to this many pixels.
CROP_PAD = 4


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices in [-(n-1), 2(n-1)] mirrored into [0, n) without repeating the edge (``F.pad``'s 'reflect')."""
    return (n - 1) - ((n - 1) - i.abs()).abs()


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """(b, c, h, w) images -> the same shape: per image, the crop of the reflect-padded image at a random offset
    (a shift of up to +-`pad` px) then a horizontal flip with probability 1/2. Two gathers on `x`'s device, no
    per-image loop; the draws come from `generator` (on that device) alone."""
    b, c, h, w = x.shape
    if pad >= min(h, w):
        raise ValueError(f"cannot reflect-pad {h}x{w} images by {pad} pixels (pad must be below the image side)")
    shift = torch.randint(-pad, pad + 1, (2, b, 1), generator=generator, device=x.device)
    flip = torch.randint(0, 2, (b, 1), generator=generator, device=x.device).bool()
    rows = _reflect(torch.arange(h, device=x.device) + shift[0], h)  # (b, h) source row of each output row
    cols = torch.arange(w, device=x.device)
    cols = _reflect(torch.where(flip, w - 1 - cols, cols) + shift[1], w)  # (b, w): flipping reads the crop backwards
    x = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w))
    return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))
