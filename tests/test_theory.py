"""Unit tests for firstlayer.theory: the linear-systems formula, its limits, and the fit of the effective time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firstlayer.energy import energy_profile
from firstlayer.theory import fit_effective_time, fit_frame, formula_profile, pearson, tau_grid


def power_law(d: int, exponent: float = 2.0) -> np.ndarray:
    """Eigenvalues lambda_i ∝ i^-exponent, descending, like natural-image patches."""
    return np.arange(1, d + 1, dtype=np.float64) ** -exponent


def identifiable_taus(lam: np.ndarray, n: int = 9) -> np.ndarray:
    """Taus from 0.1 / lambda_max to 1 / lambda_min: the range where the profile's shape still changes."""
    return np.logspace(np.log10(0.1 / lam.max()), np.log10(1.0 / lam.min()), n)


# ------------------------------------------------------------------------ formula


def test_formula_values_vector_tau():
    lam = np.array([4.0, 1.0, 0.25])
    taus = np.array([0.5, 2.0])
    out = formula_profile(lam, taus)
    assert out.shape == (2, 3)
    ref = (1 - np.exp(-taus[:, None] * lam[None, :])) / np.sqrt(lam)[None, :]
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_formula_scalar_tau_gives_a_profile():
    lam = np.array([4.0, 1.0, 0.25])
    out = formula_profile(lam, 2.0)
    assert np.shape(out) == (3,)
    np.testing.assert_allclose(out, formula_profile(lam, np.array([2.0]))[0], rtol=1e-12)


@pytest.mark.parametrize("d", [27, 75])
def test_formula_early_limit_is_sqrt_lambda(d):
    lam = power_law(d)
    tau = 1e-6 / lam.max()
    e = formula_profile(lam, np.array([tau]))[0]
    np.testing.assert_allclose(e / (tau * np.sqrt(lam)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("d", [27, 75])
def test_formula_late_limit_is_whitening(d):
    lam = power_law(d)
    tau = 100.0 / lam.min()
    e = formula_profile(lam, np.array([tau]))[0]
    np.testing.assert_allclose(e * np.sqrt(lam), 1.0, rtol=1e-12)


def test_formula_is_band_pass_in_between():
    """Rises then falls over components, and the peak moves to weaker components as tau grows."""
    lam = power_law(27)
    peaks = [int(np.argmax(formula_profile(lam, np.array([t]))[0])) for t in (3.0, 30.0, 300.0)]
    assert 0 < peaks[0] < peaks[1] < peaks[2] < 26


def test_pearson_basic():
    a = np.array([1.0, 2.0, 3.0, 5.0])
    assert pearson(a, 3 * a + 1) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert pearson(a, np.array([2.0, 1.0, 4.0, 3.0])) == pytest.approx(np.corrcoef(a, [2, 1, 4, 3])[0, 1])


def test_tau_grid_spans_eigenvalue_range():
    lam = power_law(27)
    grid = tau_grid(lam, points_per_decade=10, decades_beyond=2.0)
    assert grid[0] == pytest.approx(1e-2 / lam.max())
    assert grid[-1] == pytest.approx(1e2 / lam.min())
    steps = np.diff(np.log10(grid))
    np.testing.assert_allclose(steps, steps[0])
    assert steps[0] <= 0.1 + 1e-12


# ------------------------------------------------------------------------ fit


@pytest.mark.parametrize("d", [27, 75])
def test_fit_recovers_tau_exact_profiles(d):
    lam = power_law(d)
    taus = identifiable_taus(lam)
    fit = fit_effective_time(3.7 * formula_profile(lam, taus), lam)  # the scale must not matter
    np.testing.assert_allclose(fit.tau, taus, rtol=0.02)
    assert np.all(fit.correlation > 0.99999)
    assert not fit.at_bound.any()


@pytest.mark.parametrize("d", [27, 75])
@pytest.mark.parametrize("seed", [0, 1])
def test_fit_recovers_tau_with_noise(d, seed):
    lam = power_law(d)
    taus = np.logspace(0, np.log10(1.0 / lam.min()), 7)  # off the deep-early regime, where noise hides tau
    rng = np.random.default_rng(seed)
    profiles = 0.05 * formula_profile(lam, taus) * (1 + 0.01 * rng.normal(size=(len(taus), d)))
    fit = fit_effective_time(profiles, lam)
    np.testing.assert_allclose(fit.tau, taus, rtol=0.15)
    assert np.all(fit.correlation > 0.99)
    assert not fit.at_bound.any()


def test_fit_correlation_is_the_pearson_of_the_fitted_formula():
    lam = power_law(27)
    rng = np.random.default_rng(2)
    profiles = formula_profile(lam, np.array([2.0, 50.0])) * (1 + 0.05 * rng.normal(size=(2, 27)))
    fit = fit_effective_time(profiles, lam)
    for p, t, c in zip(profiles, fit.tau, fit.correlation, strict=True):
        assert c == pytest.approx(pearson(p, formula_profile(lam, np.array([t]))[0]), abs=1e-12)
        # the refined tau is at least as good as its neighbours on a finer scale
        for f in (0.97, 1.03):
            assert c >= pearson(p, formula_profile(lam, np.array([t * f]))[0]) - 1e-12


def test_fit_batch_equals_one_by_one():
    lam = power_law(27)
    rng = np.random.default_rng(3)
    profiles = formula_profile(lam, np.array([0.3, 4.0, 80.0, 600.0])) * (1 + 0.03 * rng.normal(size=(4, 27)))
    batch = fit_effective_time(profiles, lam)
    for i, p in enumerate(profiles):
        one = fit_effective_time(p, lam)  # (d,) input is one profile
        assert one.tau.shape == (1,)
        assert one.tau[0] == pytest.approx(batch.tau[i], rel=1e-12)
        assert one.correlation[0] == pytest.approx(batch.correlation[i], abs=1e-12)
        assert one.at_bound[0] == batch.at_bound[i]


@pytest.mark.parametrize("d", [27, 75])
def test_fit_early_extreme_is_at_small_tau_bound(d):
    """A profile ∝ sqrt(lambda) (or steeper) is the tau -> 0 limit: best at the grid's small end, flagged."""
    lam = power_law(d)
    fit = fit_effective_time(np.stack([np.sqrt(lam), lam]), lam)
    assert fit.at_bound.all()
    grid = tau_grid(lam)
    assert np.all(fit.tau <= grid[1])
    assert fit.correlation[0] > 0.9999


@pytest.mark.parametrize("d", [27, 75])
def test_fit_late_extreme_is_at_large_tau_bound(d):
    lam = power_law(d)
    fit = fit_effective_time(np.stack([1 / np.sqrt(lam), 1 / lam]), lam)
    assert fit.at_bound.all()


@pytest.mark.parametrize("d", [27, 75])
def test_fit_whitening_profile_gets_a_late_tau(d):
    """What the code does do at the late end: a tau in the whitening regime, correlation 1."""
    lam = power_law(d)
    fit = fit_effective_time(1 / np.sqrt(lam), lam)
    assert fit.tau[0] > 10 / lam.min()
    assert fit.correlation[0] == pytest.approx(1.0, abs=1e-9)


def test_fit_constant_profile_has_zero_correlation_not_nan():
    fit = fit_effective_time(np.ones(27), power_law(27))
    assert np.isfinite(fit.tau).all() and fit.correlation[0] == 0.0


def test_fit_recovers_tau_of_gradient_descent_on_least_squares():
    """docs/method.md, The exact linear check: K linear filters regressed on independent random targets by
    full-batch GD from zero; the bank's profile matches the formula with tau = eta * t."""
    rng = np.random.default_rng(0)
    d, n, k, t = 12, 2000, 2000, 1000
    patches = rng.normal(size=(n, d)) * np.sqrt(power_law(d, 1.5))
    c = patches.T @ patches / n
    g = patches.T @ rng.normal(size=(n, k)) / n  # (d, K)
    lam, u = np.linalg.eigh(c)
    lam, u = lam[::-1], u[:, ::-1]
    eta = 0.02 / lam[0]
    w = np.zeros((d, k))
    for _ in range(t):
        w -= eta * (c @ w - g)
    e = energy_profile(w.T, u)
    fit = fit_effective_time(e, lam)
    assert fit.tau[0] == pytest.approx(eta * t, rel=0.08)
    assert fit.correlation[0] > 0.995
    assert pearson(e, np.sqrt(lam)) < 0.9 and pearson(e, 1 / np.sqrt(lam)) < 0.9  # in between, not a limit


# ------------------------------------------------------------------------ tidy fit


def tidy(dataset: str, kernel_size: int, lam: np.ndarray, run: str, kind: str, tau: float) -> pd.DataFrame:
    d = len(lam)
    return pd.DataFrame({"dataset": dataset, "kernel_size": kernel_size, "run": run, "kind": kind,
                         "step": 100, "component": np.arange(1, d + 1), "eigenvalue": lam,
                         "energy": 2.0 * formula_profile(lam, np.array([tau]))[0]})  # fmt: skip


def test_fit_frame_one_row_per_profile_with_its_tau():
    lam_a, lam_b = power_law(27, 2.0), 3.0 * power_law(75, 1.5)
    truth = {("a", 3, "r0", "W"): 5.0, ("a", 3, "r1", "W"): 40.0, ("a", 3, "r0", "W-W0"): 200.0,
             ("b", 5, "r0", "W"): 1.0, ("b", 5, "r1", "W-W0"): 30.0}  # fmt: skip
    lams = {"a": lam_a, "b": lam_b}
    energy = pd.concat([tidy(ds, ks, lams[ds], run, kind, tau) for (ds, ks, run, kind), tau in truth.items()])
    energy = energy.sample(frac=1.0, random_state=0)  # row order must not matter
    both = fit_frame(energy)
    assert len(both) == 2 * len(truth)
    out = both[both.formula == "one_parameter"]
    assert len(out) == len(truth)
    assert {"dataset", "kernel_size", "run", "kind", "step", "tau", "correlation", "at_bound"} <= set(out.columns)
    for _, row in both[both.formula == "init_aware"].iterrows():  # beta = 0 profiles: the same tau
        expected = truth[(row["dataset"], row["kernel_size"], row["run"], row["kind"])]
        assert row["tau"] == pytest.approx(expected, rel=0.05) and row["correlation"] > 0.9999
    for _, row in out.iterrows():
        expected = truth[(row["dataset"], row["kernel_size"], row["run"], row["kind"])]
        assert row["tau"] == pytest.approx(expected, rel=0.02)
        assert row["correlation"] > 0.9999 and not row["at_bound"]
        assert row["step"] == 100


# ------------------------------------------------------------------------ init-aware fit


@pytest.mark.parametrize("kind", ["W-W0", "W"])
@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_init_aware_fit_recovers_tau_and_fits_exactly(kind, rho):
    from firstlayer.theory import _beta_scale, fit_init_aware, init_aware_profile

    lam = np.sort(np.random.default_rng(3).lognormal(0, 2, 27))[::-1]
    tau = 3.0 / lam[5]
    beta = rho * _beta_scale(lam, np.array([tau]), kind)[0]
    profile = init_aware_profile(lam, np.array([tau]), np.array([beta]), kind)[0]
    t, b, c = fit_init_aware(profile, lam, kind)
    assert c[0] > 0.9999
    assert abs(np.log(t[0] / tau)) < 0.1
    assert b[0] > 0


def test_init_aware_fit_never_below_the_one_parameter_fit():
    from firstlayer.theory import fit_init_aware

    rng = np.random.default_rng(0)
    lam = np.sort(rng.lognormal(0, 2, 27))[::-1]
    profiles = np.abs(rng.standard_normal((50, 27))) + formula_profile(lam, 1 / lam[3])
    one = fit_effective_time(profiles, lam)
    for kind in ("W", "W-W0"):
        _, _, corr = fit_init_aware(profiles, lam, kind)
        assert np.all(corr >= one.correlation - 1e-12)


def test_init_aware_fit_of_a_zero_init_profile_keeps_beta_small():
    """A profile of the one-parameter formula is the beta = 0 case of both init-aware models."""
    from firstlayer.theory import fit_init_aware

    lam = np.sort(np.random.default_rng(1).lognormal(0, 1.5, 27))[::-1]
    tau = 2.0 / lam[8]
    t, b, c = fit_init_aware(formula_profile(lam, tau), lam, "W-W0")
    assert c[0] > 0.99999 and abs(np.log(t[0] / tau)) < 0.05
    assert b[0] < 1e-2 / lam.max()


def test_init_aware_rejects_unknown_kind():
    from firstlayer.theory import fit_init_aware

    with pytest.raises(ValueError, match="kind"):
        fit_init_aware(np.ones(5), np.arange(1.0, 6.0), "W0")


def test_fit_frame_has_both_formulas_per_profile():
    lam = np.sort(np.random.default_rng(2).lognormal(0, 1, 12))[::-1]
    rows = []
    for seed in (0, 1):
        for kind in ("W", "W-W0"):
            e = formula_profile(lam, 1 / lam[2]) * (1 + 0.01 * seed)
            rows.append(pd.DataFrame({"dataset": "d", "kernel_size": 3, "arch": "linear", "model": "linear",
                                      "seed": seed, "step": 5, "kind": kind, "component": np.arange(1, 13),
                                      "eigenvalue": lam, "energy": e}))  # fmt: skip
    fits = fit_frame(pd.concat(rows, ignore_index=True))
    assert len(fits) == 8 and set(fits["formula"]) == {"one_parameter", "init_aware"}
    assert (fits["model"] == "linear").all()  # the network's column is kept, not overwritten
    wide = fits.pivot_table(index=["seed", "kind"], columns="formula", values="correlation")
    assert (wide["init_aware"] >= wide["one_parameter"] - 1e-12).all()
    assert (fits.loc[fits.formula == "one_parameter", "beta"] == 0).all()


# ------------------------------------------------------------------------ the exact linear check


def test_gradient_descent_equals_the_closed_form_step_by_step():
    from firstlayer.theory import closed_form_weights, simulate_gradient_descent

    rng = np.random.default_rng(0)
    d, n, k = 12, 500, 7
    patches = rng.standard_normal((n, d)) * np.sqrt(np.geomspace(10, 0.01, d))
    targets = rng.standard_normal((n, k))
    cov = patches.T @ patches / n
    eta = 0.9 / np.linalg.eigvalsh(cov).max()
    steps = [1, 2, 5, 50, 500, 3000]
    sim = simulate_gradient_descent(patches, targets, eta, steps)
    closed = closed_form_weights(cov, targets.T @ patches / n, eta, steps)
    for t in steps:
        err = np.linalg.norm(sim[t] - closed[t], axis=1) / np.linalg.norm(closed[t], axis=1)
        assert err.max() < 1e-10, (t, err.max())
    # one explicit step from zero is eta * g
    assert np.allclose(sim[1], eta * targets.T @ patches / n, rtol=1e-13)


def test_linear_check_profile_follows_the_formula_for_a_large_bank():
    from firstlayer.theory import check_steps, linear_check

    rng = np.random.default_rng(1)
    lam = np.geomspace(5, 0.005, 27)
    patches = rng.standard_normal((3000, 27)) * np.sqrt(lam)
    steps = check_steps(lam, 0.5, 10, 20000)
    assert steps[0] == 1 and steps[-1] <= 20000 and len(steps) >= 8
    profiles, summary = linear_check(patches, filters=256, steps=steps, seed=0)
    assert (summary["max_relative_weight_error"] < 1e-10).all()
    assert (summary["correlation_formula"] >= 0.99).all(), summary
    assert set(profiles["profile"]) == {"simulated", "closed_form", "formula", "formula_exp"}
    sim = profiles[profiles.profile == "simulated"].pivot(index="step", columns="component", values="energy")
    closed = profiles[profiles.profile == "closed_form"].pivot(index="step", columns="component", values="energy")
    assert np.allclose(sim, closed, rtol=1e-9)


def test_linear_check_with_few_filters_is_noisier():
    """The bank's profile concentrates on the formula as K grows: 4 filters correlate worse than 512."""
    from firstlayer.theory import linear_check

    rng = np.random.default_rng(2)
    patches = rng.standard_normal((2000, 27)) * np.sqrt(np.geomspace(5, 0.01, 27))
    small = linear_check(patches, filters=2, steps=[30], seed=3)[1]["correlation_formula"].iloc[0]
    large = linear_check(patches, filters=512, steps=[30], seed=3)[1]["correlation_formula"].iloc[0]
    assert large > 0.99 and small < large


def _profile_rows(seed: int, eigenvalues: np.ndarray, normalisation: str) -> pd.DataFrame:
    columns = {"component": np.arange(1, len(eigenvalues) + 1), "eigenvalue": eigenvalues,
               "energy": formula_profile(eigenvalues, 1.0), "normalisation": normalisation}  # fmt: skip
    return pd.DataFrame({"dataset": "a", "kernel_size": 2, "kind": "W", "seed": seed, "step": 1, **columns})


def test_fit_frame_refuses_profiles_of_several_pcas_in_one_group():
    """One fit group (dataset, kernel size, normalisation, kind) is fitted against one eigenvalue vector: profiles
    in another PCA basis must say so with their own normalisation value."""
    lam = np.geomspace(10, 0.01, 8)
    rows = _profile_rows
    mixed = pd.concat([rows(0, lam, "dataset"), rows(1, lam * 2, "dataset")], ignore_index=True)
    with pytest.raises(
        ValueError,
        match=r"\{'dataset': 'a', 'kernel_size': 2, 'normalisation': 'dataset', 'kind': 'W'\}.*2 different PCA",
    ):
        fit_frame(mixed)
    apart = pd.concat([rows(0, lam, "dataset"), rows(1, lam * 2, "other")], ignore_index=True)
    fits = fit_frame(apart)
    assert len(fits) == 4
    np.testing.assert_allclose(fits[fits.formula == "one_parameter"].tau, [1.0, 1.0], rtol=1e-3)
