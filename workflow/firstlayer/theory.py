"""The linear-systems formula (PAPER.md section 4) and its fit by effective time tau.

e_i(tau) ∝ (1 - exp(-tau * lambda_i)) / sqrt(lambda_i): the profile of a linear filter bank after gradient
descent for effective time tau = eta * t from a small init. Fitting picks tau, on a log grid refined locally,
to maximise the Pearson correlation with a measured profile; all profiles and all taus are scored at once by one
matrix product (no loop over step counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Rounds of local refinement after the coarse grid (each narrows the step 16-fold).
REFINEMENTS = 2

#: Eigenvalues below this fraction of the largest are treated as this fraction (keeps 1/sqrt finite).
EIGENVALUE_FLOOR = 1e-12


def _floor(eigenvalues: np.ndarray) -> np.ndarray:
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return np.maximum(lam, lam.max() * EIGENVALUE_FLOOR)


def formula_profile(eigenvalues: np.ndarray, tau: float | np.ndarray) -> np.ndarray:
    """(d,) eigenvalues and scalar or (T,) tau -> (d,) or (T, d) profile (1 - exp(-tau lambda)) / sqrt(lambda)."""
    lam = _floor(eigenvalues)
    t = np.asarray(tau, dtype=np.float64)[..., None]
    return -np.expm1(-t * lam) / np.sqrt(lam)


def _standardise(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm, so a dot product is a Pearson correlation."""
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1.0, norm)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors."""
    return float(_standardise(np.asarray(a, dtype=np.float64)) @ _standardise(np.asarray(b, dtype=np.float64)))


def tau_grid(eigenvalues: np.ndarray, points_per_decade: int = 40, decades_beyond: float = 2.0) -> np.ndarray:
    """Log-spaced taus from 10^-n / lambda_max (early: e ∝ sqrt(lambda)) to 10^n / lambda_min (late: whitening)."""
    lam = _floor(eigenvalues)
    lo = np.log10(1.0 / lam.max()) - decades_beyond
    hi = np.log10(1.0 / lam.min()) + decades_beyond
    return np.logspace(lo, hi, int(np.ceil((hi - lo) * points_per_decade)) + 1)


@dataclass(frozen=True)
class Fit:
    """Best tau per profile, its correlation, and whether it sits at an end of the grid (an unbounded fit)."""

    tau: np.ndarray
    correlation: np.ndarray
    at_bound: np.ndarray


def fit_effective_time(
    profiles: np.ndarray, eigenvalues: np.ndarray, *, points_per_decade: int = 40, decades_beyond: float = 2.0
) -> Fit:
    """(P, d) or (d,) measured profiles -> the tau maximising each one's correlation with the formula.

    A coarse log grid is scored for all profiles at once, then local 33-point grids spanning one step of the
    previous grid on either side of each best point refine it (REFINEMENTS rounds).
    """
    p = _standardise(np.atleast_2d(np.asarray(profiles, dtype=np.float64)))
    taus = tau_grid(eigenvalues, points_per_decade, decades_beyond)
    model = _standardise(formula_profile(eigenvalues, taus))  # (T, d)
    scores = p @ model.T  # (P, T)
    best = np.argmax(scores, axis=1)  # (P,)
    top = scores[np.arange(len(best)), best]
    # at either end the formula saturates (sqrt(lambda) early, 1/sqrt(lambda) late): ties there mean unbounded
    at_bound = (top - scores[:, 0] <= 1e-12) | (top - scores[:, -1] <= 1e-12)
    log_tau = np.log(taus[best])
    step = np.log(taus[1] / taus[0])
    rows = np.arange(p.shape[0])
    for _ in range(REFINEMENTS):  # each round: 33 points over +-1 step of the previous grid around its best
        local = log_tau[:, None] + np.linspace(-step, step, 33)[None, :]  # (P, 33)
        fine = _standardise(formula_profile(eigenvalues, np.exp(local).ravel())).reshape(*local.shape, -1)
        corr = np.einsum("pd,ptd->pt", p, fine)
        j = np.argmax(corr, axis=1)
        log_tau, step = local[rows, j], step / 16
    return Fit(np.exp(log_tau), corr[rows, j], at_bound)


def fit_frame(energy: pd.DataFrame, *, points_per_decade: int = 40, decades_beyond: float = 2.0) -> pd.DataFrame:
    """Tidy energy (one row per component) -> one row per profile with tau, correlation and at_bound.

    Profiles are identified by every column other than component, eigenvalue and energy; those measured against
    the same PCA (dataset, kernel size) are fitted together in one vectorised call.
    """
    value_cols = {"component", "eigenvalue", "energy"}
    id_cols = [c for c in energy.columns if c not in value_cols]
    out = []
    for _, g in energy.groupby(["dataset", "kernel_size"], sort=True):
        wide = g.pivot_table(index=id_cols, columns="component", values="energy", aggfunc="first")
        eigenvalues = g.groupby("component")["eigenvalue"].first().reindex(wide.columns).to_numpy()
        fit = fit_effective_time(
            wide.to_numpy(), eigenvalues, points_per_decade=points_per_decade, decades_beyond=decades_beyond
        )
        rows = wide.index.to_frame(index=False)
        rows["tau"], rows["correlation"], rows["at_bound"] = fit.tau, fit.correlation, fit.at_bound
        out.append(rows)
    return pd.concat(out, ignore_index=True)
