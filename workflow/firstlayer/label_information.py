"""Label information beyond class means: a Gaussian mutual-information statistic of the labels and the patches, from
exact class-conditional patch moments, split into a first-order part (class means differ) and a second-order part
(class covariances differ), per PCA component and whole, with a null that shuffles labels across images.

With the pooled PCA (lambda, U) of the patches (the network's input normalisation), class c's whitened covariance
and mean are S_c = Lambda^-1/2 U^T Sigma_c U Lambda^-1/2 and b_c = Lambda^-1/2 U^T (m_c - m), with patch shares
pi_c. Then sum_c pi_c (S_c + b_c b_c^T) = I, and the Gaussian statistic of label and patch, in nats per patch, splits as

    -1/2 sum_c pi_c ln det S_c = I1 + I2,   I1 = 1/2 sum_c pi_c |b_c|^2,
                                             I2 = 1/2 sum_c pi_c [tr S_c - d - ln det S_c]

(both >= 0). It is a Gaussian statistic (a divergence between the classes' Gaussians and the pooled one), not the
labels' true mutual information: it is not bounded by ln C. Per component i the same identity holds for the
diagonal: first_i = 1/2 sum_c pi_c b_ci^2 (half the existing diagnostic's ratio, firstlayer.analysis.
label_information) and second_i = 1/2 sum_c pi_c [s_cii - 1 - ln s_cii]; sum_i second_i <= I2, the rest being the
off-diagonal part (class-dependent correlations between components). Finite classes make every term positive even
for labels that carry nothing, so each is reported with its excess over labels permuted across images (not
patches: the patches of one image stay together, as their correlation is part of the data, not of the labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from firstlayer.patches import PIXEL_OFFSET, PatchMoments, normalise_moments, patch_pca

#: Components with lambda_i <= EIGENVALUE_TOL * lambda_max are left out (a rank-deficient spectrum cannot be
#: whitened there); how many were kept is reported.
EIGENVALUE_TOL = 1e-9

#: Statistics of the summary: the two orders, the second's diagonal (sum over components) and off-diagonal parts,
#: and their total.
STATISTICS = ("first_order", "second_order", "second_order_diagonal", "second_order_offdiagonal", "total")


def _image_moments(images: np.ndarray, kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, c, h, w) uint8 -> per image, the sum (m, d) and sum of outer products (m, d*d) of its stride-1 patches, in
    pixel units minus 128: integers, exact in float64."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float64) - PIXEL_OFFSET
    cols = F.unfold(x, kernel_size)  # (m, d, positions), rows in conv.weight.flatten(1) order
    outer = torch.bmm(cols, cols.transpose(1, 2))
    return cols.sum(-1).numpy(), outer.reshape(len(images), -1).numpy()


def class_patch_moments(
    images: np.ndarray, label_sets: np.ndarray, kernel_size: int, *, images_per_chunk: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, c, h, w) uint8 images and (L, n) labellings with labels 0..C-1 -> exact moments of each class's stride-1
    patches under each labelling, in pixel units minus 128 (those of firstlayer.patches.raw_moments): counts (L, C),
    sums (L, C, d), sums of outer products (L, C, d, d). One pass over the images in chunks; memory L*C*d^2 floats
    plus one chunk's patches."""
    images = np.asarray(images)
    labels = np.asarray(label_sets)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected (n, c, h, w) uint8 images, got {images.shape} {images.dtype}")
    if labels.ndim != 2 or labels.shape[1] != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label_sets must be (L, {len(images)}) integers, got {labels.shape} {labels.dtype}")
    if labels.size == 0 or labels.min() < 0:
        raise ValueError("labels must be integers 0..C-1, and there must be at least one image")
    if not 1 <= kernel_size <= min(images.shape[-2:]):
        raise ValueError(f"kernel size {kernel_size} does not fit {images.shape[-2]}x{images.shape[-1]} images")
    n, c, h, w = images.shape
    sets, classes, d = labels.shape[0], int(labels.max()) + 1, c * kernel_size**2
    totals = np.zeros((sets * classes, d))
    outers = np.zeros((sets * classes, d * d))
    for start in range(0, n, images_per_chunk):
        stop = min(start + images_per_chunk, n)
        s, o = _image_moments(images[start:stop], kernel_size)
        onehot = np.zeros((sets, classes, stop - start))
        onehot[np.arange(sets)[:, None], labels[:, start:stop], np.arange(stop - start)[None, :]] = 1.0
        onehot = onehot.reshape(sets * classes, -1)
        totals += onehot @ s  # sums of integers below 2^53: exact whatever the order
        outers += onehot @ o
    per_image = (h - kernel_size + 1) * (w - kernel_size + 1)
    counts = np.stack([np.bincount(row, minlength=classes) for row in labels]) * per_image
    return counts, totals.reshape(sets, classes, d), outers.reshape(sets, classes, d, d)


def _whitening(pooled: PatchMoments, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled moments -> eigenvalues (d,), eigenvectors (d, d) and the kept mask lambda > tol * lambda_max."""
    if not 0 < tol < 1:
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    lam, basis = patch_pca(pooled.covariance())
    if lam[0] <= 0:
        raise ValueError("the patches have no variance: nothing to whiten")
    return lam, basis, lam > tol * lam[0]


def information_terms(
    moments: Sequence[PatchMoments], eigenvalues: np.ndarray, basis: np.ndarray, keep: np.ndarray
) -> dict[str, np.ndarray | float]:
    """Per-class moments (normalised, of one labelling) and the pooled PCA restricted to ``keep`` -> per kept
    component 'first_order' and 'second_order_diagonal' (k,), and the whole-matrix 'second_order' (a float)."""
    count = np.array([m.count for m in moments], dtype=np.float64)
    if np.any(count <= 0):
        raise ValueError("every class needs at least one patch")
    pi = count / count.sum()
    whiten = basis[:, keep] / np.sqrt(eigenvalues[keep])  # (d, k)
    means = np.stack([m.mean() for m in moments])  # (C, d)
    b = (means - pi @ means) @ whiten  # (C, k)
    s = np.stack([whiten.T @ m.covariance() @ whiten for m in moments])  # (C, k, k)
    sign, logdet = np.linalg.slogdet(s)
    diag = np.diagonal(s, axis1=1, axis2=2)
    if np.any(sign <= 0) or np.any(diag <= 0):
        bad = int(np.flatnonzero((sign <= 0) | np.any(diag <= 0, axis=1))[0])
        raise ValueError(f"class {bad}'s patches do not span the {whiten.shape[1]} kept components (too few "
                         "patches or a degenerate class); raise tol or use more images")  # fmt: skip
    k = whiten.shape[1]
    return {
        "first_order": 0.5 * pi @ b**2,
        "second_order_diagonal": 0.5 * pi @ (diag - 1.0 - np.log(diag)),
        "second_order": float(0.5 * pi @ (np.trace(s, axis1=1, axis2=2) - k - logdet)),
    }


def _normalised(counts: np.ndarray, totals: np.ndarray, outers: np.ndarray, mean, std) -> list[PatchMoments]:
    """One labelling's raw class moments -> their moments after the input normalisation (classes with no image
    left out)."""
    return [
        normalise_moments(PatchMoments(int(n), t, o), mean, std)
        for n, t, o in zip(counts, totals, outers, strict=True)
        if n > 0
    ]


def _summary_values(terms: dict[str, np.ndarray | float]) -> dict[str, float]:
    first = float(np.sum(terms["first_order"]))
    diag = float(np.sum(terms["second_order_diagonal"]))
    second = float(terms["second_order"])
    return {"first_order": first, "second_order": second, "second_order_diagonal": diag,
            "second_order_offdiagonal": second - diag, "total": first + second}  # fmt: skip


def gaussian_label_information(
    moments: Sequence[PatchMoments], *, tol: float = EIGENVALUE_TOL
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-class normalised patch moments of one labelling -> (one row per component: component, eigenvalue, kept,
    first_order, second_order, total; one summary row: the STATISTICS, components, components_kept, tol), in nats
    per patch, with the pooled PCA of the classes together. No null: see ``label_information_frames``."""
    if len(moments) < 2:
        raise ValueError(f"label information needs at least 2 classes, got {len(moments)}")
    pooled = moments[0]
    for m in moments[1:]:
        pooled = pooled + m
    lam, basis, keep = _whitening(pooled, tol)
    terms = information_terms(moments, lam, basis, keep)
    components = _component_frame(lam, keep, terms)
    summary = pd.DataFrame([{**_summary_values(terms), "classes": len(moments), "components": lam.size,
                             "components_kept": int(keep.sum()), "tol": tol}])  # fmt: skip
    return components, summary


def _component_frame(lam: np.ndarray, keep: np.ndarray, terms: dict, null: list[dict] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"component": np.arange(1, lam.size + 1), "eigenvalue": lam, "kept": keep})
    for name, column in (("first_order", "first_order"), ("second_order_diagonal", "second_order")):
        values = np.full(lam.size, np.nan)
        values[keep] = terms[name]
        frame[column] = values
        if null is not None:
            null_mean = np.full(lam.size, np.nan)
            null_mean[keep] = np.mean([t[name] for t in null], axis=0)
            frame[f"{column}_null_mean"] = null_mean
            frame[f"{column}_excess"] = values - null_mean
    frame["total"] = frame["first_order"] + frame["second_order"]
    return frame


def label_information_frames(
    images: np.ndarray,
    labels: np.ndarray,
    kernel_size: int,
    mean: np.ndarray,
    std: np.ndarray,
    *,
    rng: np.random.Generator,
    draws: int = 20,
    tol: float = EIGENVALUE_TOL,
    images_per_chunk: int = 256,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(n, c, h, w) uint8 images, (n,) labels, the input normalisation's per-channel (3,) mean and std -> first- and
    second-order label information with a null of ``draws`` labellings permuted across images by ``rng``.

    Returns (one row per component: component, eigenvalue, kept, first_order, second_order (diagonal), total, and
    for both orders the null mean and the excess over it; one summary row: kernel_size, images, classes,
    components, components_kept, tol, draws and, for each of STATISTICS, its value, null_mean, null_std, excess, z
    (excess / null std) and p (share of null draws at or above the value, counting the observed labelling))."""
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},), got {labels.shape}")
    if int(draws) < 2:
        raise ValueError(f"the null needs at least 2 draws, got {draws}")
    classes, codes = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"label information needs at least 2 classes, got {classes.size}")
    label_sets = np.stack([codes, *(rng.permutation(codes) for _ in range(int(draws)))])
    counts, totals, outers = class_patch_moments(images, label_sets, kernel_size, images_per_chunk=images_per_chunk)
    per_set = [_normalised(*arrays, mean, std) for arrays in zip(counts, totals, outers, strict=True)]
    lam, basis, keep = _whitening(sum(per_set[0][1:], per_set[0][0]), tol)
    terms = [information_terms(m, lam, basis, keep) for m in per_set]
    observed, null = terms[0], terms[1:]
    components = _component_frame(lam, keep, observed, null)
    row = {"kernel_size": kernel_size, "images": len(images), "classes": int(classes.size),
           "components": lam.size, "components_kept": int(keep.sum()), "tol": tol, "draws": int(draws)}  # fmt: skip
    values = _summary_values(observed)
    null_values = [_summary_values(t) for t in null]
    for name in STATISTICS:
        draws_of = np.array([v[name] for v in null_values])
        centre, spread = float(draws_of.mean()), float(draws_of.std(ddof=1))
        row.update({name: values[name], f"{name}_null_mean": centre, f"{name}_null_std": spread,
                    f"{name}_excess": values[name] - centre,
                    f"{name}_z": (values[name] - centre) / spread if spread > 0 else float("nan"),
                    f"{name}_p": (1 + int(np.sum(draws_of >= values[name]))) / (1 + draws_of.size)})  # fmt: skip
    return components, pd.DataFrame([row])
