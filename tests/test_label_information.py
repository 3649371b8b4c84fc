"""Unit tests for firstlayer.label_information: exact class-conditional patch moments, the first- and second-order
Gaussian label information, and its null of labels permuted across images."""

from __future__ import annotations

import numpy as np
import pytest

from firstlayer.analysis import label_information
from firstlayer.datasets import channel_stats
from firstlayer.label_information import (
    class_patch_moments,
    gaussian_label_information,
    information_terms,
    label_information_frames,
)
from firstlayer.patches import PatchMoments, normalise_moments, patch_moments, patch_pca, raw_moments


def exact_moments(count: int, mean: np.ndarray, cov: np.ndarray) -> PatchMoments:
    """The moments of `count` patches with exactly this mean and covariance."""
    return PatchMoments(count, count * mean, count * (cov + np.outer(mean, mean)))


def noise_images(rng: np.random.Generator, n: int, size: int = 8, contrast: bool = False) -> np.ndarray:
    """(n, 3, size, size) uint8 i.i.d. pixels around 128; with `contrast`, each image scaled by its own factor (so
    that patches of one image are correlated, as in real images)."""
    x = rng.uniform(-32, 32, size=(n, 3, size, size))
    if contrast:
        x *= rng.uniform(0.3, 1.7, size=(n, 1, 1, 1))
    return np.round(128 + x).astype(np.uint8)


# ------------------------------------------------------------------------ moments


def test_class_moments_equal_the_shard_machinery_exactly():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 3, 9, 7), dtype=np.uint8)
    labels = rng.integers(0, 3, size=40)
    sets = np.stack([labels, rng.permutation(labels)])
    counts, totals, outers = class_patch_moments(images, sets, 3, images_per_chunk=7)
    for s in range(2):
        for c in range(3):
            ref = raw_moments(images[sets[s] == c], 3)[0]
            assert counts[s, c] == ref.count
            assert np.array_equal(totals[s, c], ref.total)
            assert np.array_equal(outers[s, c], ref.outer)


def test_first_order_is_half_the_existing_diagnostic():
    rng = np.random.default_rng(1)
    images = noise_images(rng, 60)
    labels = np.repeat(np.arange(3), 20)
    images[labels == 2, 0] += 10  # class 2 redder: a first-order difference
    mean, std = channel_stats(images)
    lam, basis = patch_pca(patch_moments(images, mean, std, 3).covariance())
    old = label_information(images, labels, 3, mean, std, lam, basis)
    comp, summary = label_information_frames(images, labels, 3, mean, std, rng=np.random.default_rng(0), draws=5)
    np.testing.assert_allclose(comp["first_order"], old["ratio"] / 2, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(comp["eigenvalue"], lam, rtol=1e-12)
    assert summary.loc[0, "first_order_z"] > 10


# ------------------------------------------------------------------------ the statistic


def test_variance_along_one_direction_exactly_from_moments():
    d, a2, n = 12, 3.0, 1000
    direction = np.zeros(d)
    direction[[2, 5]] = 1 / np.sqrt(2)
    mean = np.linspace(-1, 1, d)  # the same in both classes
    base = np.eye(d)
    moments = [exact_moments(n, mean, base), exact_moments(n, mean, base + a2 * np.outer(direction, direction))]
    comp, summary = gaussian_label_information(moments)
    pooled = 1 + a2 / 2
    s = np.array([1 / pooled, (1 + a2) / pooled])
    expected = 0.5 * np.mean(s - 1 - np.log(s))
    top = comp["second_order"].idxmax()
    assert top == 0  # the direction has the largest variance: the first component
    _, basis = patch_pca(sum(moments[1:], moments[0]).covariance())
    assert abs(basis[:, 0] @ direction) == pytest.approx(1.0)
    assert comp.loc[top, "second_order"] == pytest.approx(expected, rel=1e-12)
    assert np.abs(comp["second_order"].drop(top)).max() < 1e-12
    assert np.abs(comp["first_order"]).max() < 1e-12
    assert summary.loc[0, "second_order"] == pytest.approx(expected, rel=1e-12)
    assert abs(summary.loc[0, "second_order_offdiagonal"]) < 1e-12


def test_orders_add_up_and_the_diagonal_is_a_lower_bound():
    rng = np.random.default_rng(2)
    d = 6
    moments = []
    for _ in range(3):
        a = rng.standard_normal((d, d))
        moments.append(exact_moments(int(rng.integers(50, 200)), rng.standard_normal(d), a @ a.T + np.eye(d)))
    comp, summary = gaussian_label_information(moments)
    row = summary.iloc[0]
    assert row["total"] == pytest.approx(row["first_order"] + row["second_order"])
    assert row["second_order_offdiagonal"] > 0  # Hadamard: sum of diagonal terms <= whole-matrix term
    # whole: -1/2 sum_c pi_c ln det S_c; per component: -1/2 sum_c pi_c ln s_cii
    pooled = sum(moments[1:], moments[0])
    lam, basis = patch_pca(pooled.covariance())
    pi = np.array([m.count for m in moments]) / pooled.count
    w = basis / np.sqrt(lam)
    s = [w.T @ m.covariance() @ w for m in moments]
    assert row["total"] == pytest.approx(-0.5 * sum(p * np.linalg.slogdet(x)[1] for p, x in zip(pi, s, strict=True)))
    per = -0.5 * sum(p * np.log(np.diag(x)) for p, x in zip(pi, s, strict=True))
    np.testing.assert_allclose(comp["total"], per, rtol=1e-10)


def test_second_order_finds_a_variance_only_direction_in_images():
    rng = np.random.default_rng(3)
    n = 200
    images = noise_images(rng, 2 * n).astype(np.int16)
    labels = np.repeat([0, 1], n)
    # class 1: each image shifted by +-a along red minus green, at every pixel, half each sign: the class means
    # are equal and class 1 has extra variance along one patch direction
    sign = rng.permutation(np.repeat([-1, 1], n // 2)) * 30
    images[n:, 0] += sign[:, None, None]
    images[n:, 1] -= sign[:, None, None]
    images = images.astype(np.uint8)
    mean, std = channel_stats(images)
    comp, summary = label_information_frames(images, labels, 3, mean, std, rng=np.random.default_rng(0), draws=20)
    direction = np.concatenate([np.full(9, 1 / std[0]), np.full(9, -1 / std[1]), np.zeros(9)])
    direction /= np.linalg.norm(direction)
    _, basis = patch_pca(patch_moments(images, mean, std, 3).covariance())
    top = int(comp["second_order"].idxmax())
    assert abs(basis[:, top] @ direction) > 0.99
    assert comp.loc[top, "second_order_null_mean"] < 0.05 * comp.loc[top, "second_order"]
    row = summary.iloc[0]
    assert row["second_order_z"] > 10 and row["second_order_p"] == pytest.approx(1 / 21)
    assert row["first_order"] < 0.05 * comp.loc[top, "second_order"]
    assert row["first_order_excess"] < 3 * row["first_order_null_std"]  # first order finds nothing


def test_equal_classes_give_no_excess_over_the_null():
    rng = np.random.default_rng(4)
    images = noise_images(rng, 120, contrast=True)
    labels = rng.permutation(np.repeat(np.arange(3), 40))
    mean, std = channel_stats(images)
    _, summary = label_information_frames(images, labels, 3, mean, std, rng=np.random.default_rng(1), draws=30)
    row = summary.iloc[0]
    for name in ("first_order", "second_order", "total"):
        assert row[name] > 0  # finite classes: positive however little the labels carry
        assert abs(row[f"{name}_z"]) < 4, name  # the null is skewed (chi-square like): 4 of its std, not 3


def test_rank_deficient_spectrum_keeps_the_spanned_components():
    rng = np.random.default_rng(5)
    grey = noise_images(rng, 30)[:, :1]
    images = np.repeat(grey, 3, axis=1)  # R = G = B: 9 of 27 directions
    labels = np.repeat([0, 1], 15)
    comp, summary = label_information_frames(images, labels, 3, np.full(3, 0.5), np.full(3, 0.1),
                                             rng=np.random.default_rng(0), draws=3)  # fmt: skip
    assert summary.loc[0, "components_kept"] == 9 and summary.loc[0, "components"] == 27
    assert comp["kept"].sum() == 9 and comp.loc[~comp["kept"], "second_order"].isna().all()
    assert np.isfinite(summary.loc[0, "second_order"])


def test_errors_a_user_can_cause():
    rng = np.random.default_rng(6)
    images = noise_images(rng, 10)
    mean, std = channel_stats(images)
    with pytest.raises(ValueError, match="at least 2 classes"):
        label_information_frames(images, np.zeros(10, dtype=int), 3, mean, std, rng=rng)
    with pytest.raises(ValueError, match="labels must be"):
        label_information_frames(images, np.zeros(9, dtype=int), 3, mean, std, rng=rng)
    with pytest.raises(ValueError, match="at least 2 draws"):
        label_information_frames(images, np.arange(10) % 2, 3, mean, std, rng=rng, draws=1)
    with pytest.raises(ValueError, match="uint8"):
        class_patch_moments(images.astype(np.float32), (np.arange(10) % 2)[None], 3)
    with pytest.raises(ValueError, match="does not fit"):
        class_patch_moments(images, (np.arange(10) % 2)[None], 9)
    # a class with fewer patches than dimensions cannot be whitened
    one = normalise_moments(raw_moments(images[:1, :, :3, :3], 3)[0], mean, std)
    many = normalise_moments(raw_moments(images[1:], 3)[0], mean, std)
    lam, basis = patch_pca((one + many).covariance())
    with pytest.raises(ValueError, match="do not span"):
        information_terms([one, many], lam, basis, lam > 1e-9 * lam[0])
