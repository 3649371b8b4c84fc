"""Fault suite, whitening on rank-deficient patches: grayscale pictures stored as RGB (three equal channels) leave
2/3 of the PCA components with eigenvalues of rounding size; flatness is measured over the span the data has, and
a span too small to judge is 'not applicable', never a verdict from zeros (docs/method.md, Whitening)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firstlayer.analysis import RANK_TOLERANCE, whitening_frame, whitening_summary
from firstlayer.energy import energy_table
from firstlayer.patches import patch_moments, patch_pca
from firstlayer.replication import to_markdown, verdict, whitening_rows

MEAN, STD = np.full(3, 0.45), np.full(3, 0.27)


def grey_as_rgb(n: int = 40, side: int = 10, seed: int = 0) -> np.ndarray:
    """(n, 3, side, side) uint8 grayscale pictures with three identical channels (a smoothed noise)."""
    g = np.random.default_rng(seed).integers(0, 256, (n, 1, side, side)).astype(np.float64)
    g = (g + np.roll(g, 1, 2) + np.roll(g, 1, 3)) / 3
    return np.repeat(g.astype(np.uint8), 3, axis=1)


def pca(kernel_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The patch PCA of the grey pictures, through the workflow's own moments and eigendecomposition."""
    return patch_pca(patch_moments(grey_as_rgb(), MEAN, STD, kernel_size).covariance())


def flatness(r2: np.ndarray) -> float:
    return float(np.exp(np.mean(np.log(r2))) / np.mean(r2))


def linear_runs(lam: np.ndarray, basis: np.ndarray, kernel_size: int, steps: int = 20) -> pd.DataFrame:
    """Energy tables of linear patch filters trained by gradient descent, in closed form (docs/method.md): targets
    whose correlation with u_i scales as sigma_i, so the change along u_i is (1 - (1 - eta lam_i)^t) / sigma_i, early
    ∝ sigma_i (less white), late ∝ 1 / sigma_i (white); it lies in the data's span, the null directions keep W0."""
    span = lam > RANK_TOLERANCE * lam.max()
    eta = 0.005 / lam.max()
    gain = np.where(span, (1 - (1 - eta * lam) ** steps) / np.sqrt(np.where(span, lam, 1.0)), 0.0)
    frames = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        w0 = 0.1 * rng.normal(size=(64, len(lam)))
        w = w0 + (rng.normal(size=w0.shape) * gain) @ basis.T
        run = {"dataset": "grey", "arch": "linear", "model": "linear", "labels": "true", "seed": seed,
               "kernel_size": kernel_size}  # fmt: skip
        frames.append(energy_table({0: w0, steps: w}, lam, basis, run))
    return pd.concat(frames, ignore_index=True)


def test_grey_as_rgb_patches_are_rank_deficient_by_rounding_only():
    lam, _ = pca(3)
    relative = lam / lam.max()
    assert (relative > 1e-3).sum() == 9  # one channel's 3x3 patches
    assert relative[9:].max() < 1e-13 and (relative[9:] == 0).any()  # exact zeros and ~1e-16 noise
    assert relative[9:].max() < RANK_TOLERANCE < relative[:9].min()


@pytest.mark.parametrize(("steps", "whiter"), [(20, False), (20000, True)])
def test_flatness_and_verdict_come_from_the_span_not_from_zeros(steps, whiter):
    """Early training makes the response less white, late training whitens it; the old measure floored the 18 null
    directions at 1e-12, read ~1e-8 ("0.000") everywhere and said "no" to both."""
    lam, basis = pca(3)
    energy = linear_runs(lam, basis, 3, steps)
    w = whitening_frame(energy)
    s = whitening_summary(w).iloc[0]
    assert min(s["data"], s["init"], s["trained"]) > 0.05
    assert w[w.stage == "data"]["flatness"].to_numpy() == pytest.approx(flatness(lam[:9]), rel=1e-12)
    assert (w["rank"] == 9).all() and (w["components"] == 27).all() and w["applicable"].all()
    assert s["rank"] == 9 and s["components"] == 27 and s["applicable"] and s["reason"] == ""
    # each run's final W against its W0, over the 9 spanned components only
    e = energy[energy.kind == "W"].sort_values(["seed", "step", "component"])
    span = {key: flatness(g["energy"].to_numpy()[:9] ** 2 * lam[:9]) for key, g in e.groupby(["seed", "step"])}
    assert all((span[(seed, steps)] > span[(seed, 0)]) is whiter for seed in (0, 1, 2))
    assert s["fraction_flatter_than_init"] == float(whiter)
    row = whitening_rows(whitening_summary(w))[0]
    assert "0.000" not in row["measured"] and "dataset grey rank 9 of 27" in row["measured"]
    assert row["holds"] is whiter


def test_one_spanned_component_is_not_applicable_with_its_reason():
    """A 1x1 first layer on grey-as-RGB pictures: its patches span one of 3 components, where any bank is 'white'."""
    lam, basis = pca(1)
    assert (lam > RANK_TOLERANCE * lam.max()).sum() == 1
    w = whitening_frame(linear_runs(lam, basis, 1))
    assert w["flatness"].isna().all() and not w["applicable"].any() and (w["rank"] == 1).all()
    assert w["reason"].str.contains("span 1 of 3 components").all()
    s = whitening_summary(w)
    assert not s["applicable"].any() and (s["n_seeds"] == 0).all() and s["fraction_flatter_than_init"].isna().all()
    row = whitening_rows(s)[0]
    assert row["measured"].startswith("not applicable: dataset grey: the patches span 1 of 3 components")
    assert row["holds"] is None and verdict(row["holds"]) == "not run" and np.isnan(row["value"])
    line = to_markdown(pd.DataFrame([row])).splitlines()[-1]
    assert "not applicable" in line and not line.endswith(("| yes |", "| no |"))


def test_the_whitening_figure_names_a_not_applicable_dataset_instead_of_plotting_zeros():
    from firstlayer.plots import plot_whitening

    one = whitening_frame(linear_runs(*pca(1), 1))
    lam, basis = pca(3)
    nine = whitening_frame(linear_runs(lam, basis, 3)).assign(dataset="grey3")
    fig = plot_whitening(pd.concat([one, nine], ignore_index=True))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("not applicable:\nthe patches span 1 of 3 components") for t in texts)
    assert any("rank 9 of 27" in ax.get_title() for ax in fig.axes)
    alone = plot_whitening(one)
    assert alone.axes[0].texts[0].get_text().startswith("whitening not applicable: the patches span 1 of 3")
