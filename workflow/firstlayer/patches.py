"""Exact moments, covariance and PCA of all stride-1 patches, flattened like ``conv.weight.flatten(1)``
(docs/method.md, Patch statistics)."""

from __future__ import annotations

import itertools
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


#: Pixels are shifted by this before products, so that every value is an integer in [-128, 127].
PIXEL_OFFSET = 128
#: Largest number of images summed by one float32 product: 1024 * 128**2 = 2**24, the last integer float32 holds
#: exactly, so every partial sum of the chunk GEMMs is an exact integer whatever order the BLAS adds in.
MAX_IMAGES_PER_CHUNK = 1024


def _column_block(kernel_size: int) -> int:
    """Columns per GEMM block (measured on a 2-core EPYC at 32x32): the halo of 2(k-1) columns makes wide blocks
    waste products, narrow ones make small GEMMs."""
    return 8 if kernel_size <= 5 else 4


def raw_patch_moments(
    images: np.ndarray | torch.Tensor,
    kernel_size: int,
    *,
    images_per_chunk: int = 256,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> PatchMoments:
    """(n, c, h, w) uint8 images -> exact moments of all their stride-1 k x k patches, in pixel units minus 128."""
    return raw_moments(images, kernel_size, images_per_chunk=images_per_chunk, device=device, progress=progress)[0]


def _checked_images(images: np.ndarray | torch.Tensor, k: int, images_per_chunk: int) -> torch.Tensor:
    """`images` as a (n, c, h, w) uint8 tensor, after the checks ``raw_moments`` needs."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected (n, c, h, w) uint8 images, got {tuple(images.shape)} {images.dtype}")
    if not 1 <= images_per_chunk <= MAX_IMAGES_PER_CHUNK:
        raise ValueError(f"images_per_chunk must be in [1, {MAX_IMAGES_PER_CHUNK}] (exact float32 sums)")
    if k < 1:
        raise ValueError(f"kernel size must be at least 1, got {k}")
    if k > min(images.shape[-2:]):
        raise ValueError(f"kernel size {k} is larger than the {images.shape[-2]}x{images.shape[-1]} images")
    return images


def raw_moments(
    images: np.ndarray | torch.Tensor,
    kernel_size: int,
    *,
    images_per_chunk: int = 256,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[PatchMoments, PatchMoments]:
    """(n, c, h, w) uint8 images -> exact moments of all k x k patches and of all pixels (for the channel mean and
    std), in pixel units minus 128, from row-product GEMMs (docs/method.md, Patch statistics)."""
    images = _checked_images(images, kernel_size, images_per_chunk)
    n, c, h, w = images.shape
    k = kernel_size
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    b = min(_column_block(k), w)
    nb = -(-w // b)
    wp, bh = nb * b, b + 2 * (k - 1)
    # float32 sums of at most MAX_IMAGES_PER_CHUNK images (exact), flushed into float64
    rows32 = torch.zeros(k, h * nb, b * c, bh * c, device=device)
    pixels32 = torch.zeros(h * wp * c, device=device)
    rows = torch.zeros(rows32.shape, dtype=torch.float64, device=device)
    pixels = torch.zeros(pixels32.shape, dtype=torch.float64, device=device)
    pending, buffers = 0, {}
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 on GPUs: products must stay exact
    try:
        for start in range(0, n, images_per_chunk):
            x = images[start : start + images_per_chunk].to(device)
            m = x.shape[0]
            if pending + m > MAX_IMAGES_PER_CHUNK:
                rows += rows32
                pixels += pixels32
                rows32.zero_()
                pixels32.zero_()
                pending = 0
            pending += m
            # (row, column, channel, image) inside a zero margin, so a row block and its halo are strided views;
            # halo products past a row's end are never used. x ^ 0x80 read as int8 is x - 128.
            margin = (k * wp + bh) * c * m
            if m not in buffers:
                buffers[m] = (
                    torch.zeros(h * wp * c * m + 2 * margin, device=device),
                    torch.empty(h, w, c, m, dtype=torch.uint8, device=device),
                )
            buf, shifted = buffers[m]
            region = buf[margin : margin + h * wp * c * m]
            torch.bitwise_xor(x.permute(2, 3, 1, 0), PIXEL_OFFSET, out=shifted)
            region.view(h, wp, c, m)[:, :w].copy_(shifted.view(torch.int8))
            pixels32 += region.view(-1, m).sum(1)
            block = b * c * m
            own = buf.as_strided((h * nb, b * c, m), (block, m, 1), margin)
            for di in range(k):
                halo = buf.as_strided((h * nb, bh * c, m), (block, m, 1), margin + (di * wp - (k - 1)) * c * m)
                rows32[di].baddbmm_(own, halo.transpose(1, 2))
            if progress is not None:
                progress(min(start + images_per_chunk, n), n)
        rows += rows32
        pixels += pixels32
    finally:
        torch.set_float32_matmul_precision(precision)
    pixel_sums = pixels.cpu().numpy().reshape(h, wp, c).transpose(2, 0, 1)[..., :w]
    return _window_sums(rows.cpu().numpy(), pixel_sums, n, k, b)


def _rect_sums(prefix: np.ndarray, index: tuple, top: np.ndarray, left: np.ndarray, height: int, width: int):
    """Sums over rows [top, top+height) x columns [left, left+width) of the arrays picked by ``index`` from
    2-D prefix sums on the last two axes of ``prefix`` (all index arrays broadcast together)."""
    bottom, right = top + height, left + width
    return (
        prefix[(*index, bottom, right)]
        - prefix[(*index, top, right)]
        - prefix[(*index, bottom, left)]
        + prefix[(*index, top, left)]
    )


def _prefix2d(a: np.ndarray) -> np.ndarray:
    """Zero-padded cumulative sums over the last two axes: out[..., i, j] = a[..., :i, :j].sum()."""
    out = np.zeros((*a.shape[:-2], a.shape[-2] + 1, a.shape[-1] + 1), dtype=np.float64)
    out[..., 1:, 1:] = a.cumsum(-2).cumsum(-1)
    return out


def _window_sums(rows: np.ndarray, pixels: np.ndarray, n: int, k: int, b: int) -> tuple[PatchMoments, PatchMoments]:
    """Row products (k, h*nb, b*c, bh*c) and pixel sums (c, h, w) -> moments of all k x k patches and pixels."""
    c, h, w = pixels.shape
    nb, bh = rows.shape[1] // h, b + 2 * (k - 1)
    # prod[di, c1, c2, t, u, v] = sum over images of x[c1, u, v] * x[c2, u + di, v + t - (k - 1)]
    r = rows.reshape(k, h, nb, b, c, bh, c).transpose(0, 4, 6, 1, 2, 3, 5)  # di c1 c2 u nb b bh
    vl = np.arange(b)[:, None]
    t = np.arange(2 * k - 1)[None, :]
    prod = r[..., vl, vl + t]  # di c1 c2 u nb b (2k-1)
    prod = prod.reshape(k, c, c, h, nb * b, 2 * k - 1)[:, :, :, :, :w].transpose(0, 1, 2, 5, 3, 4)
    prefix = _prefix2d(prod)  # di c1 c2 t (h+1) (w+1)
    oh, ow = h - k + 1, w - k + 1
    # patch entry index -> (channel, row, column), the order of conv.weight.flatten(1)
    ch, ri, ci = (g.ravel() for g in np.meshgrid(np.arange(c), np.arange(k), np.arange(k), indexing="ij"))
    a_c, a_i, a_j = ch[:, None], ri[:, None], ci[:, None]
    b_c, b_i, b_j = ch[None, :], ri[None, :], ci[None, :]
    swap = b_i < a_i  # entries with the second row above the first: use the symmetric pair
    c1, c2 = np.where(swap, b_c, a_c), np.where(swap, a_c, b_c)
    i1, i2 = np.where(swap, b_i, a_i), np.where(swap, a_i, b_i)
    j1, j2 = np.where(swap, b_j, a_j), np.where(swap, a_j, b_j)
    outer = _rect_sums(prefix, (i2 - i1, c1, c2, j2 - j1 + k - 1), i1, j1, oh, ow)
    total = _rect_sums(_prefix2d(pixels), (ch,), ri, ci, oh, ow)
    patch = PatchMoments(n * oh * ow, total, (outer + outer.T) / 2)
    squares = prod[0, :, :, k - 1].sum((-2, -1))  # offset (0, 0): x[c1, u, v] * x[c2, u, v] over all pixels
    pixel = PatchMoments(n * h * w, pixels.sum((1, 2)), (squares + squares.T) / 2)
    return patch, pixel


def normalise_moments(raw: PatchMoments, mean: np.ndarray, std: np.ndarray) -> PatchMoments:
    """Moments in pixel-minus-128 units -> moments of the network input (x / 255 - mean) / std per channel.

    Each input entry is z = a * y + b with a = 1 / (255 std) and b = (128 / 255 - mean) / std of its channel.
    """
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    per_channel = raw.dim // mean.shape[0]
    if per_channel * mean.shape[0] != raw.dim:
        raise ValueError(f"moments of dimension {raw.dim} do not split into {mean.shape[0]} channels")
    a = np.repeat(1 / (255 * std), per_channel)
    b = np.repeat((PIXEL_OFFSET / 255 - mean) / std, per_channel)
    at = a * raw.total
    total = at + raw.count * b
    outer = a[:, None] * raw.outer * a[None, :] + np.outer(at, b) + np.outer(b, at) + raw.count * np.outer(b, b)
    return PatchMoments(raw.count, total, (outer + outer.T) / 2)


def patch_moments(
    images: np.ndarray | torch.Tensor,
    mean: np.ndarray,
    std: np.ndarray,
    kernel_size: int,
    *,
    images_per_chunk: int = 256,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> PatchMoments:
    """(n, c, h, w) uint8 images -> exact moments of all their k x k patches after normalisation, in float64."""
    raw = raw_patch_moments(images, kernel_size, images_per_chunk=images_per_chunk, device=device, progress=progress)
    return normalise_moments(raw, mean, std)


def shard_moments_frame(
    patch: PatchMoments, pixel: PatchMoments, *, kernel_size: int, start: int, stop: int, images: int
) -> pd.DataFrame:
    """Raw (pixel - 128) moments of images [start, stop) of `images` -> a two-row table: statistic 'patch'
    (k x k) and 'pixel' (1 x 1, for the channel mean and std)."""
    rows = []
    for statistic, m, k in (("patch", patch, kernel_size), ("pixel", pixel, 1)):
        rows.append(
            {
                "statistic": statistic,
                "kernel_size": k,
                "image_start": start,
                "image_stop": stop,
                "images": images,
                "count": m.count,
                "dim": m.dim,
                "total": m.total.astype(np.float64),
                "outer": m.outer.astype(np.float64).ravel(),
            }
        )
    return pd.DataFrame(rows)


def moments_from_frames(frames: list[pd.DataFrame], statistic: str) -> PatchMoments:
    """Sum the moments named `statistic` over shard tables; checks that the shards tile their images exactly.

    The raw moments are integers held exactly in float64, so the sum does not depend on the shards' order."""
    rows = pd.concat([f[f.statistic == statistic] for f in frames], ignore_index=True)
    if rows.empty:
        raise ValueError(f"no {statistic!r} moments in the shard tables")
    if rows.dim.nunique() != 1:
        raise ValueError(f"shards disagree on the patch dimension: {sorted(rows.dim.unique())}")
    ranges = sorted(zip(rows.image_start, rows.image_stop, strict=True))
    gaps = any(a[1] != b[0] for a, b in itertools.pairwise(ranges))
    if rows.images.nunique() != 1 or ranges[0][0] != 0 or ranges[-1][1] != rows.images.iloc[0] or gaps:
        raise ValueError(f"shards do not tile the images without gaps or overlaps: {ranges}")
    d = int(rows.dim.iloc[0])
    total = np.zeros(d)
    outer = np.zeros((d, d))
    for t, o in zip(rows.total, rows.outer, strict=True):
        total += np.asarray(t, dtype=np.float64)
        outer += np.asarray(o, dtype=np.float64).reshape(d, d)
    return PatchMoments(int(rows["count"].sum()), total, outer)


def sample_patches(
    images: np.ndarray, kernel_size: int, mean: np.ndarray, std: np.ndarray, count: int, seed: int
) -> np.ndarray:
    """(n, c, h, w) uint8 -> (count, c*k*k) float64 patches at seeded random images and positions, normalised like
    the network input and flattened like conv.weight.flatten(1)."""
    n, c, h, w = images.shape
    k = kernel_size
    rng = np.random.default_rng(seed)
    which = rng.integers(0, n, size=count)
    rows = rng.integers(0, h - k + 1, size=count)
    cols = rng.integers(0, w - k + 1, size=count)
    di, dj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    r = rows[:, None, None] + di[None]  # (count, k, k)
    q = cols[:, None, None] + dj[None]
    pix = images[which[:, None, None, None], np.arange(c)[None, :, None, None], r[:, None], q[:, None]]
    x = normalise(torch.from_numpy(pix), torch.as_tensor(mean), torch.as_tensor(std), torch.float64)
    return x.reshape(count, c * k * k).numpy()


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
