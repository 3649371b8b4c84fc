"""Unit tests for firstlayer.energy: energy profiles in the PCA basis, tidy frames, snapshot round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from firstlayer.energy import (
    KINDS,
    TRAINED_STEP,
    energy_frame,
    energy_profile,
    energy_table,
    profile_tables,
    snapshot_arrays,
)
from firstlayer.runs import snapshots_frame


def orthonormal(d: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_filters_along_basis_vectors_have_known_energy():
    u = orthonormal(6)
    filters = np.stack([2.0 * u[:, 0], -3.0 * u[:, 3], 1.0 * u[:, 3], np.zeros(6)])  # K = 4
    e = energy_profile(filters, u)
    expected = np.zeros(6)
    expected[0] = np.sqrt(4.0 / 4)
    expected[3] = np.sqrt((9.0 + 1.0) / 4)
    np.testing.assert_allclose(e, expected, atol=1e-12)


def test_energy_matches_definition_and_is_nonnegative():
    rng = np.random.default_rng(1)
    u, w = orthonormal(12, seed=2), rng.normal(size=(5, 12))
    e = energy_profile(w, u)
    ref = np.array([np.sqrt(np.mean([(w[k] @ u[:, i]) ** 2 for k in range(5)])) for i in range(12)])
    np.testing.assert_allclose(e, ref, rtol=1e-12)
    assert e.shape == (12,) and np.all(e >= 0)


def test_energy_sums_to_frobenius_norm_in_any_orthonormal_basis():
    w = np.random.default_rng(3).normal(size=(7, 27))
    for seed in range(3):
        e = energy_profile(w, orthonormal(27, seed=seed))
        np.testing.assert_allclose(np.sum(e**2) * 7, np.sum(w**2), rtol=1e-12)


def test_energy_of_identity_basis_is_column_rms():
    w = np.random.default_rng(4).normal(size=(3, 4))
    np.testing.assert_allclose(energy_profile(w, np.eye(4)), np.sqrt((w**2).mean(0)), rtol=1e-12)


def test_energy_depends_on_basis_order():
    """Columns are components: permuting the basis permutes the profile the same way."""
    u, w = orthonormal(5, seed=5), np.random.default_rng(5).normal(size=(4, 5))
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(energy_profile(w, u[:, perm]), energy_profile(w, u)[perm], rtol=1e-12)


def test_energy_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        energy_profile(np.ones((3, 5)), np.eye(4))
    with pytest.raises(ValueError):
        energy_profile(np.ones(4), np.eye(4))


# ------------------------------------------------------------------------ frames


def test_energy_frame_rows_and_values():
    d = 6
    u = orthonormal(d, seed=7)
    lam = np.array([6.0, 5, 4, 3, 2, 1])
    rng = np.random.default_rng(7)
    snaps = {10: rng.normal(size=(3, d)), 0: rng.normal(size=(3, d)), 4: rng.normal(size=(3, d))}
    frame = energy_frame(snaps, lam, u)
    assert {"step", "kind", "component", "eigenvalue", "energy", "filters"} <= set(frame.columns)
    assert (frame["filters"] == 3).all()  # the bank's width: regime.py's random-bank null is per width
    counts = frame.groupby(["kind", "step"]).size()
    assert dict(counts) == {("W", 0): d, ("W", 4): d, ("W", 10): d, ("W-W0", 4): d, ("W-W0", 10): d}
    for (kind, step), g in frame.groupby(["kind", "step"]):
        g = g.sort_values("component")
        assert list(g["component"]) == list(range(1, d + 1))
        np.testing.assert_array_equal(g["eigenvalue"].to_numpy(), lam)
        bank = snaps[step] if kind == "W" else snaps[step] - snaps[0]
        np.testing.assert_allclose(g["energy"].to_numpy(), energy_profile(bank, u), rtol=1e-12)


def test_energy_frame_needs_step_zero():
    with pytest.raises(ValueError, match="step 0"):
        energy_frame({1: np.ones((2, 3)), 5: np.ones((2, 3))}, np.ones(3), np.eye(3))
    with pytest.raises(ValueError, match="unknown profile kinds"):
        energy_frame({0: np.ones((2, 3))}, np.ones(3), np.eye(3), kinds=("W0",))


def test_w_alone_needs_no_init_and_banks_may_be_conv_weights():
    """A pretrained checkpoint or the API's weights: W only, at TRAINED_STEP; (K, c, k, k) banks are flattened like
    conv.weight.flatten(1)."""
    u = orthonormal(12, seed=8)
    w = np.random.default_rng(8).normal(size=(4, 3, 2, 2))
    frame = energy_frame({TRAINED_STEP: w}, np.arange(12.0, 0, -1), u, kinds=("W",))
    assert set(frame.kind) == {"W"} and set(frame.step) == {TRAINED_STEP} and len(frame) == 12
    assert set(frame.filters) == {4}
    np.testing.assert_array_equal(frame.energy.to_numpy(), energy_profile(w.reshape(4, -1), u))


def test_profile_tables_are_the_workflows_three_tables():
    """energy_table adds the keys and the normalisation; profile_tables adds theory.fit_frame and
    analysis.whitening_frame of it: the functions the workflow's fit and whitening jobs run on all runs."""
    from firstlayer.analysis import whitening_frame
    from firstlayer.theory import fit_frame

    d, rng = 12, np.random.default_rng(9)
    u, lam = orthonormal(d, seed=9), np.geomspace(10, 0.01, d)
    snaps = {0: rng.normal(size=(6, d)), 3: rng.normal(size=(6, d)), 9: rng.normal(size=(6, d))}
    keys = {"dataset": "a", "arch": "net", "model": "net", "labels": "true", "seed": 0, "kernel_size": 2}
    tables = profile_tables(snaps, lam, u, keys, kinds=KINDS)
    energy = energy_table(snaps, lam, u, keys)
    pd.testing.assert_frame_equal(tables.energy, energy)
    assert (energy.normalisation == "dataset").all() and set(keys) <= set(energy.columns)
    pd.testing.assert_frame_equal(tables.fits, fit_frame(energy))
    pd.testing.assert_frame_equal(tables.whitening, whitening_frame(energy))
    assert tables.whitening.stage.tolist() == ["data", "init", "trained", "trained"]


# ------------------------------------------------------------------------ snapshots


def test_snapshot_arrays_inverts_snapshots_frame():
    g = torch.Generator().manual_seed(0)
    snaps = {s: torch.randn(4, 3, 3, 3, generator=g) for s in (0, 1, 7, 30)}
    frame = snapshots_frame(snaps)
    assert len(frame) == 4 * 4 * 27
    back = snapshot_arrays(frame.sample(frac=1.0, random_state=1))  # row order must not matter
    assert list(back) == [0, 1, 7, 30]
    for s, w in snaps.items():
        assert back[s].dtype == np.float64 and back[s].shape == (4, 27)
        np.testing.assert_array_equal(back[s], w.flatten(1).numpy().astype(np.float64))


def test_snapshots_frame_position_follows_weight_flatten():
    w = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3, 3)
    frame = snapshots_frame({0: w})
    row = frame[(frame["filter"] == 1) & (frame["position"] == 1 * 9 + 2 * 3 + 0)]  # channel 1, row 2, col 0
    assert row["weight"].item() == w[1, 1, 2, 0].item()


def test_energy_of_snapshot_round_trip_equals_direct():
    g = torch.Generator().manual_seed(3)
    snaps = {s: torch.randn(5, 3, 1, 1, generator=g) for s in (0, 2)}
    u = orthonormal(3, seed=3)
    frame = energy_frame(snapshot_arrays(snapshots_frame(snaps)), np.array([3.0, 2.0, 1.0]), u)
    direct = energy_profile(snaps[2].flatten(1).numpy(), u)
    got = frame[(frame.kind == "W") & (frame.step == 2)].sort_values("component")["energy"].to_numpy()
    np.testing.assert_allclose(got, direct, rtol=1e-6)
    assert isinstance(frame, pd.DataFrame)
