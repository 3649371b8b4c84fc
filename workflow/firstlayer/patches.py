"""Patch statistics (PAPER.md section 1): exact moments of all stride-1 patches, covariance and PCA.

A patch is flattened in the order of ``conv.weight.flatten(1)``: (channel, row, column). ``F.unfold`` produces
exactly that order, which a unit test holds against a real ``nn.Conv2d``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PatchMoments:
    """Sufficient statistics of a set of patches: count, sum (d,) and sum of outer products (d, d), float64."""

    count: int
    total: np.ndarray
    outer: np.ndarray

    def __add__(self, other: PatchMoments) -> PatchMoments:
        return PatchMoments(self.count + other.count, self.total + other.total, self.outer + other.outer)

    @property
    def dim(self) -> int:
        return int(self.total.shape[0])

    def mean(self) -> np.ndarray:
        """(d,) mean patch."""
        return self.total / self.count

    def covariance(self) -> np.ndarray:
        """(d, d) population covariance E[(p - mu)(p - mu)^T]."""
        mu = self.mean()
        cov = self.outer / self.count - np.outer(mu, mu)
        return (cov + cov.T) / 2


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, c, h, w) uint8 -> (n, c, h, w) float: the network's input, (x / 255 - mean) / std per channel."""
    mean = mean.to(device=images.device, dtype=dtype).view(1, -1, 1, 1)
    std = std.to(device=images.device, dtype=dtype).view(1, -1, 1, 1)
    return (images.to(dtype) / 255 - mean) / std


def unfold_patches(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(n, c, h, w) -> (n * L, c*k*k) every stride-1, unpadded patch, flattened like conv.weight.flatten(1)."""
    cols = F.unfold(x, kernel_size)  # (n, c*k*k, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def patch_moments(
    images: np.ndarray | torch.Tensor,
    mean: np.ndarray,
    std: np.ndarray,
    kernel_size: int,
    *,
    images_per_chunk: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> PatchMoments:
    """(n, c, h, w) uint8 images -> exact moments of all their k x k patches after normalisation, in float64."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected (n, c, h, w) uint8 images, got {tuple(images.shape)} {images.dtype}")
    n, c, h, w = images.shape
    if kernel_size > min(h, w):
        raise ValueError(f"kernel size {kernel_size} is larger than the {h}x{w} images")
    mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float64))
    std_t = torch.as_tensor(np.asarray(std, dtype=np.float64))
    d = c * kernel_size * kernel_size
    count = 0
    total = torch.zeros(d, dtype=torch.float64)
    outer = torch.zeros(d, d, dtype=torch.float64)
    for start in range(0, n, images_per_chunk):
        chunk = normalise(images[start : start + images_per_chunk], mean_t, std_t, torch.float64)
        p = unfold_patches(chunk, kernel_size)
        count += p.shape[0]
        total += p.sum(0)
        outer += p.T @ p
        if progress is not None:
            progress(min(start + images_per_chunk, n), n)
    return PatchMoments(count, total.numpy(), outer.numpy())


def patch_pca(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d, d) covariance -> eigenvalues (d,) descending (clipped at 0) and eigenvectors (d, d) as columns.

    Each eigenvector's sign is fixed so that its largest-magnitude entry is positive (deterministic basis).
    """
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    pivot = np.abs(evecs).argmax(axis=0)
    signs = np.sign(evecs[pivot, np.arange(evecs.shape[1])])
    return evals, evecs * np.where(signs == 0, 1.0, signs)


def pca_frame(moments: PatchMoments, *, dataset: str, kernel_size: int, channels: int = 3) -> pd.DataFrame:
    """Moments -> tidy PCA table, one row per component: rank, eigenvalue, eigenvector, mean patch, counts."""
    evals, evecs = patch_pca(moments.covariance())
    d = moments.dim
    if d != channels * kernel_size**2:
        raise ValueError(f"moments of dimension {d} do not match {channels} channels x {kernel_size}^2")
    return pd.DataFrame(
        {
            "dataset": dataset,
            "kernel_size": kernel_size,
            "component": np.arange(1, d + 1),
            "eigenvalue": evals,
            "eigenvector": list(evecs.T),
            "patch_mean": [moments.mean()] * d,
            "patch_count": moments.count,
        }
    )
