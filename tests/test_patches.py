"""Unit tests for firstlayer.patches: exact patch moments, flatten order against a real conv, PCA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from firstlayer.datasets import channel_stats, shard_bounds
from firstlayer.io import pca_basis
from firstlayer.patches import (
    MAX_IMAGES_PER_CHUNK,
    PIXEL_OFFSET,
    PatchMoments,
    moments_from_frames,
    normalise,
    patch_moments,
    patch_pca,
    pca_frame,
    raw_patch_moments,
    shard_moments_frame,
    unfold_patches,
)

MEAN = np.array([0.3, 0.5, 0.6])
STD = np.array([0.2, 0.25, 0.3])


def random_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, h, w), dtype=np.uint8)


def loop_patches(images: np.ndarray, k: int) -> np.ndarray:
    """Every stride-1 unpadded k x k patch of the normalised images, flattened (channel, row, column), by loops."""
    x = (images.astype(np.float64) / 255 - MEAN[None, :, None, None]) / STD[None, :, None, None]
    n, c, h, w = x.shape
    out = []
    for i in range(n):
        for r in range(h - k + 1):
            for col in range(w - k + 1):
                p = np.empty(c * k * k)
                for ch in range(c):
                    for dr in range(k):
                        for dc in range(k):
                            p[(ch * k + dr) * k + dc] = x[i, ch, r + dr, col + dc]
                out.append(p)
    return np.array(out)


# ------------------------------------------------------------------------ moments


@pytest.mark.parametrize(("k", "h", "w"), [(1, 6, 9), (3, 7, 5), (5, 9, 7)])
@pytest.mark.parametrize("chunk", [1, 2, 3, 256])
def test_moments_match_numpy_on_explicit_patches(k, h, w, chunk):
    images = random_images(5, h, w, seed=k)
    p = loop_patches(images, k)
    m = patch_moments(images, MEAN, STD, k, images_per_chunk=chunk)
    assert m.count == p.shape[0] == 5 * (h - k + 1) * (w - k + 1)
    assert m.dim == 3 * k * k
    np.testing.assert_allclose(m.mean(), p.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.covariance(), np.cov(p.T, bias=True), rtol=1e-9, atol=1e-11)
    assert np.array_equal(m.covariance(), m.covariance().T)


def test_moments_do_not_depend_on_chunking():
    images = random_images(7, 8, 11, seed=5)
    ref = patch_moments(images, MEAN, STD, 3, images_per_chunk=7)
    for chunk in (1, 2, 3, 4, 6, 100):
        m = patch_moments(images, MEAN, STD, 3, images_per_chunk=chunk)
        assert m.count == ref.count
        np.testing.assert_allclose(m.total, ref.total, rtol=1e-12)
        np.testing.assert_allclose(m.outer, ref.outer, rtol=1e-12)


def test_moments_add_halves_equals_one_pass():
    images = random_images(6, 10, 10, seed=2)
    whole = patch_moments(images, MEAN, STD, 3)
    a = patch_moments(images[:2], MEAN, STD, 3)
    b = patch_moments(images[2:], MEAN, STD, 3)
    s = a + b
    assert isinstance(s, PatchMoments) and s.count == whole.count
    np.testing.assert_allclose(s.total, whole.total, rtol=1e-12)
    np.testing.assert_allclose(s.outer, whole.outer, rtol=1e-12)
    np.testing.assert_allclose(s.covariance(), whole.covariance(), rtol=1e-10, atol=1e-12)


def unfold_raw_moments(images: np.ndarray, k: int) -> PatchMoments:
    """The straightforward float64 computation: unfold every patch of (pixel - 128), then p^T p."""
    p = unfold_patches(torch.from_numpy(images).double() - PIXEL_OFFSET, k)
    return PatchMoments(p.shape[0], p.sum(0).numpy(), (p.T @ p).numpy())


@pytest.mark.parametrize(
    ("n", "h", "w", "k", "chunk"),
    [(9, 32, 32, 3, 4), (4, 32, 32, 7, 1024), (6, 11, 19, 5, 5), (3, 33, 47, 9, 2), (5, 4, 4, 4, 2), (3, 5, 6, 1, 3)],
)
def test_raw_moments_are_exactly_the_unfolded_float64_sums(n, h, w, k, chunk):
    """Integer pixel products summed in exact float32 chunks equal float64 unfolding bit for bit."""
    images = random_images(n, h, w, seed=k + h)
    m, ref = raw_patch_moments(images, k, images_per_chunk=chunk), unfold_raw_moments(images, k)
    assert m.count == ref.count
    np.testing.assert_array_equal(m.total, ref.total)
    np.testing.assert_array_equal(m.outer, ref.outer)


def test_raw_moments_exact_at_the_largest_chunk_of_extreme_pixels():
    """1024 images of 0s and 255s: the float32 partial sums reach 2^24 and must still be exact."""
    rng = np.random.default_rng(3)
    images = np.where(rng.random((MAX_IMAGES_PER_CHUNK, 3, 5, 5)) < 0.5, 0, 255).astype(np.uint8)
    images[:, 0] = 0  # channel 0 all -128 after the offset: sum of squares = 1024 * 128^2 * 9 patches' worth
    m, ref = raw_patch_moments(images, 3, images_per_chunk=MAX_IMAGES_PER_CHUNK), unfold_raw_moments(images, 3)
    np.testing.assert_array_equal(m.outer, ref.outer)
    with pytest.raises(ValueError, match="images_per_chunk"):
        raw_patch_moments(images, 3, images_per_chunk=MAX_IMAGES_PER_CHUNK + 1)


def test_shards_sum_to_the_single_pass_exactly():
    images = random_images(23, 9, 9, seed=4)
    whole = raw_patch_moments(images, 3)
    frames = []
    for start, stop in reversed(shard_bounds(len(images), 5)):  # any order
        part = images[start:stop]
        patch, pixel = raw_patch_moments(part, 3, images_per_chunk=2), raw_patch_moments(part, 1)
        frames.append(shard_moments_frame(patch, pixel, kernel_size=3, start=start, stop=stop, images=len(images)))
    summed = moments_from_frames(frames, "patch")
    assert summed.count == whole.count
    np.testing.assert_array_equal(summed.outer, whole.outer)
    np.testing.assert_array_equal(summed.total, whole.total)
    pixels = moments_from_frames(frames, "pixel")  # the 1x1 moments agree with the dataset's normalisation
    mean, std = channel_stats(images)
    np.testing.assert_allclose((pixels.mean() + PIXEL_OFFSET) / 255, mean, rtol=1e-14)
    np.testing.assert_allclose(np.sqrt(np.diag(pixels.covariance())) / 255, std, rtol=1e-12)
    with pytest.raises(ValueError, match="tile"):
        moments_from_frames(frames[1:], "patch")  # the last shard missing
    with pytest.raises(ValueError, match="tile"):
        moments_from_frames(frames[:2] + frames[3:], "patch")  # a middle shard missing
    with pytest.raises(ValueError, match="tile"):
        moments_from_frames(frames + frames[:1], "patch")  # a shard twice


def test_shard_bounds():
    assert shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_bounds(8, 4) == [(0, 4), (4, 8)]
    assert shard_bounds(3, 100) == [(0, 3)]
    with pytest.raises(ValueError, match="positive"):
        shard_bounds(3, 0)


def test_moments_accept_torch_and_reject_bad_input():
    images = random_images(2, 6, 6)
    a = patch_moments(images, MEAN, STD, 3)
    b = patch_moments(torch.from_numpy(images), MEAN, STD, 3)
    np.testing.assert_array_equal(a.outer, b.outer)
    with pytest.raises(ValueError, match="uint8"):
        patch_moments(images.astype(np.float32), MEAN, STD, 3)
    with pytest.raises(ValueError, match="uint8"):
        patch_moments(images[0], MEAN, STD, 3)
    with pytest.raises(ValueError, match="larger"):
        patch_moments(images, MEAN, STD, 7)


def test_progress_reports_images_done():
    seen = []
    patch_moments(random_images(5, 6, 6), MEAN, STD, 3, images_per_chunk=2, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(2, 5), (4, 5), (5, 5)]


# ------------------------------------------------------------------------ flatten order


def test_normalise_values():
    images = torch.from_numpy(random_images(2, 4, 5))
    x = normalise(images, torch.tensor(MEAN), torch.tensor(STD), torch.float64)
    ref = (images.numpy() / 255 - MEAN[None, :, None, None]) / STD[None, :, None, None]
    assert x.dtype == torch.float64
    np.testing.assert_allclose(x.numpy(), ref, rtol=1e-12)


def test_unfold_matches_loops():
    images = random_images(2, 7, 6, seed=9)
    x = normalise(torch.from_numpy(images), torch.tensor(MEAN), torch.tensor(STD), torch.float64)
    np.testing.assert_allclose(unfold_patches(x, 3).numpy(), loop_patches(images, 3), rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_conv_output_is_weight_dot_patch(k):
    """A real Conv2d equals the dot products of conv.weight.flatten(1) with unfold_patches: same order."""
    torch.manual_seed(k)
    conv = nn.Conv2d(3, 4, k, bias=False).double()
    images = torch.from_numpy(random_images(2, 9, 8, seed=k))
    x = normalise(images, torch.tensor(MEAN), torch.tensor(STD), torch.float64)
    with torch.no_grad():
        y = conv(x)  # (n, K, h', w')
        dots = unfold_patches(x, k) @ conv.weight.flatten(1).T  # (n*L, K)
    ref = y.permute(0, 2, 3, 1).reshape(-1, 4)
    torch.testing.assert_close(dots, ref, rtol=1e-10, atol=1e-10)


def test_conv_order_is_not_trivially_symmetric():
    """Guard for the test above: a transposed patch order (column, row) would be caught."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, bias=False).double()
    x = normalise(torch.from_numpy(random_images(1, 6, 6)), torch.tensor(MEAN), torch.tensor(STD), torch.float64)
    p = unfold_patches(x, 3).view(-1, 3, 3, 3).transpose(2, 3).reshape(-1, 27)
    with torch.no_grad():
        ref = conv(x).permute(0, 2, 3, 1).reshape(-1, 2)
    assert not torch.allclose(p @ conv.weight.flatten(1).T, ref)


# ------------------------------------------------------------------------ PCA


def random_cov(d: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, 3 * d)) * np.linspace(3, 0.1, d)[:, None]
    return a @ a.T / (3 * d)


def test_pca_reconstructs_covariance():
    cov = random_cov(12)
    evals, evecs = patch_pca(cov)
    assert evals.shape == (12,) and evecs.shape == (12, 12)
    assert np.all(np.diff(evals) <= 0) and np.all(evals >= 0)
    np.testing.assert_allclose(evecs @ np.diag(evals) @ evecs.T, cov, atol=1e-12)
    np.testing.assert_allclose(evecs.T @ evecs, np.eye(12), atol=1e-12)
    np.testing.assert_allclose(cov @ evecs, evecs * evals, atol=1e-12)


def test_pca_clips_negative_eigenvalues_of_singular_covariance():
    a = np.random.default_rng(1).normal(size=(6, 2))
    cov = a @ a.T  # rank 2: four eigenvalues are ~0, some may come out slightly negative
    evals, _ = patch_pca(cov)
    assert np.all(evals >= 0)
    assert evals[2] < 1e-12 * evals[0]


def test_pca_sign_rule_is_deterministic():
    cov = random_cov(9, seed=3)
    _, evecs = patch_pca(cov)
    pivot = np.abs(evecs).argmax(axis=0)
    assert np.all(evecs[pivot, np.arange(9)] > 0)
    # the same basis from another decomposition (SVD, arbitrary signs) once the sign rule is applied by hand
    u, _, _ = np.linalg.svd(cov)
    u = u * np.random.default_rng(0).choice([-1.0, 1.0], size=9)
    piv = np.abs(u).argmax(axis=0)
    u = u * np.sign(u[piv, np.arange(9)])
    np.testing.assert_allclose(evecs, u, atol=1e-8)
    # the basis is a function of the matrix, not of eigh's whim: repeated calls agree exactly
    np.testing.assert_array_equal(patch_pca(cov)[1], evecs)


def test_pca_frame_and_basis_round_trip():
    images = random_images(4, 8, 8, seed=4)
    m = patch_moments(images, MEAN, STD, 3)
    frame = pca_frame(m, dataset="toy", kernel_size=3)
    assert len(frame) == 27
    assert list(frame["component"]) == list(range(1, 28))
    assert (frame["dataset"] == "toy").all() and (frame["kernel_size"] == 3).all()
    assert (frame["patch_count"] == m.count).all()
    np.testing.assert_allclose(frame["patch_mean"].iloc[5], m.mean())
    evals, evecs = patch_pca(m.covariance())
    shuffled = frame.sample(frac=1.0, random_state=0)
    e2, v2 = pca_basis(shuffled)
    np.testing.assert_array_equal(e2, evals)
    np.testing.assert_array_equal(v2, evecs)
    # survives a parquet round trip (eigenvectors stored as lists)
    frame2 = pd.DataFrame(
        {
            **{c: frame[c] for c in frame.columns if c != "eigenvector"},
            "eigenvector": [list(v) for v in frame["eigenvector"]],
        }
    )
    np.testing.assert_array_equal(pca_basis(frame2)[1], evecs)


def test_pca_frame_rejects_wrong_kernel_size():
    m = patch_moments(random_images(2, 6, 6), MEAN, STD, 3)
    with pytest.raises(ValueError, match="dimension"):
        pca_frame(m, dataset="toy", kernel_size=5)


def test_sample_patches_are_real_patches_of_the_normalised_images():
    from firstlayer.patches import sample_patches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 9, 11), dtype=np.uint8)
    mean, std = np.array([0.3, 0.5, 0.7]), np.array([0.2, 0.25, 0.3])
    sample = sample_patches(images, 3, mean, std, 200, seed=4)
    x = normalise(torch.from_numpy(images), torch.tensor(mean), torch.tensor(std), torch.float64)
    every = unfold_patches(x, 3).numpy()  # (5 * 7 * 9, 27)
    dist = ((sample[:, None, :] - every[None, :, :]) ** 2).sum(-1).min(1)
    assert sample.shape == (200, 27) and dist.max() < 1e-20
    assert np.array_equal(sample, sample_patches(images, 3, mean, std, 200, seed=4))
    assert not np.array_equal(sample, sample_patches(images, 3, mean, std, 200, seed=5))
