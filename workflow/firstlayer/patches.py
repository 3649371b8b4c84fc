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


#: Bytes of float32 row products held at once: the whole image's when they fit (summed over up to 1024 images
#: before the window sums, as fast as it gets), else a band of rows that is window-summed after each chunk.
PRODUCT_BYTES = 64 << 20
#: Bytes of each smaller working buffer: the float32 image tile fed to the GEMMs and the float64 window-sum pass.
BUFFER_BYTES = 16 << 20


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


@dataclass(frozen=True)
class _Layout:
    """Shapes of the row-product GEMMs: column blocks of b columns against a halo of bh = b + 2(k-1) columns."""

    k: int
    c: int
    h: int
    w: int

    @property
    def b(self) -> int:
        return min(_column_block(self.k), self.w)

    @property
    def nb(self) -> int:
        return -(-self.w // self.b)

    @property
    def wp(self) -> int:
        return self.nb * self.b

    @property
    def bh(self) -> int:
        return self.b + 2 * (self.k - 1)

    def product_shape(self, rows: int) -> tuple[int, int, int, int]:
        """(row offset di, position block, b*c, bh*c) products of `rows` image rows."""
        return (self.k, rows * self.nb, self.b * self.c, self.bh * self.c)


class _Tile:
    """Image rows [u0, u1 + k - 1) of a chunk in float32 pixel-minus-128, laid out (row, column, channel, image)
    inside a zero margin, so that each block's own columns and its halo are strided views for batched GEMMs."""

    def __init__(self, lay: _Layout, rows: int, images: int, device: torch.device):
        self.lay, self.rows = lay, rows
        size = (2 * (lay.k - 1) + (rows + lay.k - 1) * lay.wp) * lay.c * images
        self.buf = torch.zeros(size, device=device)
        self.shifted = torch.empty((rows + lay.k - 1) * lay.w * lay.c * images, dtype=torch.uint8, device=device)
        self.m = images

    def load(self, x: torch.Tensor, u0: int, u1: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Chunk `x` (m, c, h, w) uint8, own rows [u0, u1) -> own (blocks, b*c, m), halos (blocks, m, bh*c) per
        row offset, and the own rows' pixels (u1 - u0, wp, c, m)."""
        lay, m = self.lay, x.shape[0]
        k, c, wp = lay.k, lay.c, lay.wp
        front, span = (k - 1) * c * m, (self.rows + k - 1) * wp * c * m
        if m != self.m:  # a smaller last chunk reuses the storage: clear what the larger layout left behind
            self.buf[: 2 * front + span].zero_()
            self.m = m
        region = self.buf[front : front + span].view(self.rows + k - 1, wp, c, m)
        stop = min(lay.h, u1 + k - 1)
        shifted = self.shifted[: (stop - u0) * lay.w * c * m].view(stop - u0, lay.w, c, m)
        torch.bitwise_xor(x[:, :, u0:stop].permute(2, 3, 1, 0), PIXEL_OFFSET, out=shifted)  # x ^ 0x80 as int8: x - 128
        region[: stop - u0, : lay.w].copy_(shifted.view(torch.int8))
        region[stop - u0 :].zero_()  # rows below the image
        block, blocks = lay.b * c * m, (u1 - u0) * lay.nb
        own = self.buf.as_strided((blocks, lay.b * c, m), (block, m, 1), front)
        halos = [
            self.buf.as_strided((blocks, lay.bh * c, m), (block, m, 1), front + (di * wp - (k - 1)) * c * m).mT
            for di in range(k)
        ]
        return own, halos, region[: u1 - u0]


def _edges(size: int, k: int) -> np.ndarray:
    """Sorted cell edges along an axis: every k x k window's rows (or columns) are [e_i, e_j) for two edges."""
    return np.unique(np.r_[np.arange(k), np.arange(size - k + 1, size + 1)])


def _interior(size: int, k: int) -> tuple[int, int]:
    """The one cell [lo, hi) of several rows (columns) between the edges; every other row is a cell of its own.
    lo == hi where there is none (size < 2k): then every row is its own cell."""
    lo, hi = k - 1, size - k + 1
    return (lo, hi) if hi - lo >= 2 else (lo, lo)


class _WindowSums:
    """float64 sums of the row products over cells between window edges: the k - 1 border rows and columns one by
    one, the interior as one cell, so memory does not grow with the image (docs/method.md, Patch statistics)."""

    def __init__(self, lay: _Layout, device: torch.device):
        self.lay = lay
        k, c = lay.k, lay.c
        self.row_edges, self.col_edges = _edges(lay.h, k), _edges(lay.w, k)
        self.rows, self.cols = _interior(lay.h, k), _interior(lay.w, k)
        shape = (k, len(self.row_edges) - 1, len(self.col_edges) - 1, c, 2 * k - 1, c)  # di row col c1 t c2
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)
        row_bytes = 8 * k * lay.wp * c * (2 * k - 1) * c
        self.step = max(1, min(lay.h, BUFFER_BYTES // row_bytes))
        self.work = torch.empty(k, self.step, lay.wp, c, 2 * k - 1, c, dtype=torch.float64, device=device)

    def add(self, products: torch.Tensor, u0: int) -> None:
        """Add float32 products (k, rows * nb, b*c, bh*c) of image rows [u0, u0 + rows), exact integers."""
        lay = self.lay
        k, c, b, nb = lay.k, lay.c, lay.b, lay.nb
        rows = products.shape[1] // nb
        s0, s1 = products.stride(0), products.stride(1)
        (top, bottom), (left, right) = self.rows, self.cols
        shrink = max(bottom - top - 1, 0)  # rows below the interior sit this many cells up
        for a in range(u0, u0 + rows, self.step):
            r = min(self.step, u0 + rows - a)
            # x[c1, u, v] * x[c2, u + di, v + t - (k - 1)]: the diagonal of each block's (b*c, bh*c) products
            strides = (s0, nb * s1, s1, (lay.bh * c + 1) * c, lay.bh * c, c, 1)
            offset = products.storage_offset() + (a - u0) * nb * s1
            diag = products.as_strided((k, r, nb, b, c, 2 * k - 1, c), strides, offset)
            work = self.work[:, :r]
            work.view(k, r, nb, b, c, 2 * k - 1, c).copy_(diag)  # float64 from here: sums over positions stay exact
            cells = work[:, :, : lay.w]
            if right > left:
                inner = cells[:, :, left:right].sum(2, keepdim=True)
                cells = torch.cat([cells[:, :, :left], inner, cells[:, :, right:]], 2)
            for lo, hi in ((a, min(a + r, top)), (max(a, bottom), a + r)):  # border rows
                if lo < hi:
                    cell = lo if lo < top else lo - shrink
                    self.sums[:, cell : cell + hi - lo] += cells[:, lo - a : hi - a]
            lo, hi = max(a, top), min(a + r, bottom)
            if lo < hi:
                self.sums[:, top] += cells[:, lo - a : hi - a].sum(1)

    def moments(self, pixels: np.ndarray, n: int) -> tuple[PatchMoments, PatchMoments]:
        """Pixel sums (c, h, w) and the cell sums -> moments of all k x k patches and of all pixels."""
        lay = self.lay
        k, c, h, w = lay.k, lay.c, lay.h, lay.w
        sums = self.sums.cpu().numpy()  # summed in place below: call once
        # prefix[di, I, J] = sum over rows < row_edges[I] and columns < col_edges[J]
        prefix = np.zeros((k, sums.shape[1] + 1, sums.shape[2] + 1, *sums.shape[3:]))
        np.cumsum(np.cumsum(sums, 1, out=sums), 2, out=prefix[:, 1:, 1:])
        row_at, col_at = np.zeros(h + 1, dtype=int), np.zeros(w + 1, dtype=int)
        row_at[self.row_edges], col_at[self.col_edges] = np.arange(len(self.row_edges)), np.arange(len(self.col_edges))
        oh, ow = h - k + 1, w - k + 1
        # patch entry index -> (channel, row, column), the order of conv.weight.flatten(1)
        ch, ri, ci = (g.ravel() for g in np.meshgrid(np.arange(c), np.arange(k), np.arange(k), indexing="ij"))
        a_c, a_i, a_j = ch[:, None], ri[:, None], ci[:, None]
        b_c, b_i, b_j = ch[None, :], ri[None, :], ci[None, :]
        swap = b_i < a_i  # entries with the second row above the first: use the symmetric pair
        c1, c2 = np.where(swap, b_c, a_c), np.where(swap, a_c, b_c)
        i1, i2 = np.where(swap, b_i, a_i), np.where(swap, a_i, b_i)
        j1, j2 = np.where(swap, b_j, a_j), np.where(swap, a_j, b_j)
        index = (i2 - i1, c1, j2 - j1 + k - 1, c2)
        top, bottom, left, right = row_at[i1], row_at[i1 + oh], col_at[j1], col_at[j1 + ow]
        at = prefix.transpose(0, 3, 4, 5, 1, 2)  # di c1 t c2 I J
        outer = (
            at[(*index, bottom, right)]
            - at[(*index, top, right)]
            - at[(*index, bottom, left)]
            + at[(*index, top, left)]
        )
        total = _rect_sums(_prefix2d(pixels), (ch,), ri, ci, oh, ow)
        patch = PatchMoments(n * oh * ow, total, (outer + outer.T) / 2)
        squares = prefix[0, -1, -1, :, k - 1]  # offset (0, 0): x[c1, u, v] * x[c2, u, v] over all pixels
        pixel = PatchMoments(n * h * w, pixels.sum((1, 2)), (squares + squares.T) / 2)
        return patch, pixel


def raw_moments(
    images: np.ndarray | torch.Tensor,
    kernel_size: int,
    *,
    images_per_chunk: int = 256,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[PatchMoments, PatchMoments]:
    """(n, c, h, w) uint8 images -> exact moments of all k x k patches and of all pixels (for the channel mean and
    std), in pixel units minus 128, from row-product GEMMs (docs/method.md, Patch statistics).

    Memory is bounded by PRODUCT_BYTES and BUFFER_BYTES (plus a chunk of images on a GPU), whatever the number and
    size of the images: rows are processed in bands, and the window sums keep only cells between window edges."""
    images = _checked_images(images, kernel_size, images_per_chunk)
    n, c, h, w = images.shape
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    lay = _Layout(kernel_size, c, h, w)
    k = lay.k
    row_bytes = 4 * int(np.prod(lay.product_shape(1)))
    whole = h * row_bytes <= PRODUCT_BYTES  # products of all rows fit: sum them over chunks before window sums
    band = h if whole else max(1, PRODUCT_BYTES // row_bytes)
    chunk = max(1, min(n, images_per_chunk))
    rows = max(1, min(band, BUFFER_BYTES // (4 * lay.wp * c * chunk) - (k - 1)))  # image rows per tile
    tile, sums = _Tile(lay, rows, chunk, device), _WindowSums(lay, device)
    # float32 sums of at most MAX_IMAGES_PER_CHUNK images (exact), flushed into float64; else one tile's rows
    shape = lay.product_shape(h if whole else rows)
    products = torch.zeros(shape, device=device) if whole else torch.empty(shape, device=device)
    pixels32 = torch.zeros(h, lay.wp, c, device=device)
    pixels = torch.zeros(pixels32.shape, dtype=torch.float64, device=device)
    pending = 0
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 on GPUs: products must stay exact
    try:
        for start in range(0, n, images_per_chunk):
            x = images[start : start + images_per_chunk].to(device)
            if pending + x.shape[0] > MAX_IMAGES_PER_CHUNK:
                if whole:
                    sums.add(products, 0)
                    products.zero_()
                pixels += pixels32
                pixels32.zero_()
                pending = 0
            pending += x.shape[0]
            for u0 in range(0, h, rows):
                u1 = min(h, u0 + rows)
                own, halos, region = tile.load(x, u0, u1)
                pixels32[u0:u1] += region.sum(-1)
                if whole:
                    for di, halo in enumerate(halos):
                        products[di, u0 * lay.nb : u1 * lay.nb].baddbmm_(own, halo)
                else:
                    out = products[:, : (u1 - u0) * lay.nb]
                    for di, halo in enumerate(halos):
                        torch.bmm(own, halo, out=out[di])
                    sums.add(out, u0)
            if progress is not None:
                progress(min(start + images_per_chunk, n), n)
        if whole:
            sums.add(products, 0)
        pixels += pixels32
    finally:
        torch.set_float32_matmul_precision(precision)
    return sums.moments(pixels.cpu().numpy()[:, :w].transpose(2, 0, 1), n)


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
