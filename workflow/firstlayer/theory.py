"""The linear-systems formula e_i ∝ (1 - exp(-tau lambda_i)) / sqrt(lambda_i), its two fits and its exact check
(docs/method.md: The linear-systems formula, Fitting the formula, The exact linear check)."""

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
    """(P, d) or (d,) measured profiles -> the tau maximising each one's correlation with the formula: a log grid
    scored for all profiles at once, refined locally (docs/method.md, Fitting the formula)."""
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


# ------------------------------------------------------------------------ the init-aware fit (tau and beta)

#: Relative init shares rho tried on the coarse grid (0 = no init term, i.e. the one-parameter formula).
RHO_GRID = np.concatenate([[0.0], np.logspace(-4, 4, 33)])


def init_aware_profile(eigenvalues: np.ndarray, tau: np.ndarray, beta: np.ndarray, kind: str) -> np.ndarray:
    """(d,) eigenvalues, (T,) tau and (T,) beta -> (T, d) expected profiles of kind 'W-W0' or 'W' with an i.i.d.
    init, beta in units of 1/lambda (docs/method.md, The linear-systems formula)."""
    lam = _floor(eigenvalues)
    t = np.asarray(tau, dtype=np.float64)[..., None]
    b = np.asarray(beta, dtype=np.float64)[..., None]
    g = -np.expm1(-t * lam)
    if kind == "W-W0":
        return g * np.sqrt(1.0 / lam + b)
    if kind == "W":
        return np.sqrt(np.exp(-2.0 * t * lam) * b + g**2 / lam)
    raise ValueError(f"unknown profile kind {kind!r}; allowed: W, W-W0")


def _beta_scale(eigenvalues: np.ndarray, tau: np.ndarray, kind: str) -> np.ndarray:
    """The natural size of beta at each tau: the largest learned term, so rho = beta / scale is comparable."""
    lam = _floor(eigenvalues)
    if kind == "W-W0":
        return np.full(np.shape(tau), 1.0 / lam.max() + 1.0 / lam.min()) / 2
    g = -np.expm1(-np.asarray(tau, dtype=np.float64)[..., None] * lam)
    return (g**2 / lam).max(axis=-1)


def _local_scores(
    p: np.ndarray, lam: np.ndarray, log_tau: np.ndarray, rho: np.ndarray, dt: np.ndarray, dr: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlations of standardised profiles p (P, d) with the model on the local grid log_tau + dt x rho * e^dr
    (rho = 0 stays 0) -> (scores (P, Tt*Tr), tau (P, Tt*Tr), rho (P, Tt*Tr)). Transcendentals are taken on the
    (P, Tt, d) tau grid only; the rho axis is combined by products, and the correlation comes from sums (the model
    is never standardised in memory)."""
    tau = np.exp(log_tau[:, None] + dt[None, :])  # (P, Tt)
    rho_c = np.where(rho[:, None] > 0, rho[:, None] * np.exp(dr)[None, :], 0.0)  # (P, Tr)
    g = -np.expm1(-tau[..., None] * lam)  # (P, Tt, d)
    if kind == "W-W0":
        scale = (1.0 / lam.max() + 1.0 / lam.min()) / 2
        model = g[:, :, None, :] * np.sqrt(1.0 / lam + (rho_c * scale)[:, None, :, None])
    else:
        learned = g**2 / lam  # (P, Tt, d)
        beta = rho_c[:, None, :] * learned.max(axis=-1)[:, :, None]  # (P, Tt, Tr)
        model = np.sqrt(np.exp(-2.0 * tau[..., None] * lam)[:, :, None, :] * beta[..., None] + learned[:, :, None, :])
    d = lam.shape[0]
    model = model.reshape(p.shape[0], -1, d)
    dots = np.einsum("pd,ptd->pt", p, model)  # p is centred, so this is the centred dot product
    var = np.einsum("ptd,ptd->pt", model, model) - model.sum(axis=-1) ** 2 / d
    scores = dots / np.sqrt(np.maximum(var, 1e-300))
    shape = (tau.shape[1], rho_c.shape[1])
    tau_flat = np.broadcast_to(tau[:, :, None], (p.shape[0], *shape)).reshape(p.shape[0], -1)
    rho_flat = np.broadcast_to(rho_c[:, None, :], (p.shape[0], *shape)).reshape(p.shape[0], -1)
    return scores, tau_flat, rho_flat


def fit_init_aware(
    profiles: np.ndarray,
    eigenvalues: np.ndarray,
    kind: str,
    *,
    points_per_decade: int = 10,
    decades_beyond: float = 2.0,
    block: int = 2048,
    one: Fit | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, d) or (d,) profiles of one kind ('W' or 'W-W0') -> (tau, beta, correlation), each (P,), never below the
    one-parameter fit ``one`` (computed when not given); see docs/method.md, Fitting the formula."""
    if kind not in ("W", "W-W0"):
        raise ValueError(f"unknown profile kind {kind!r}; allowed: W, W-W0")
    p_all = _standardise(np.atleast_2d(np.asarray(profiles, dtype=np.float64)))
    lam = _floor(eigenvalues)
    taus = tau_grid(eigenvalues, points_per_decade, decades_beyond)
    tt, rr = np.meshgrid(taus, RHO_GRID, indexing="ij")
    tt, rr = tt.ravel(), rr.ravel()
    coarse = _standardise(init_aware_profile(eigenvalues, tt, rr * _beta_scale(eigenvalues, tt, kind), kind))
    tau_out, rho_out, corr_out = (np.empty(p_all.shape[0]) for _ in range(3))
    for start in range(0, p_all.shape[0], block):
        p = p_all[start : start + block]
        rows = np.arange(p.shape[0])
        best = np.argmax(p @ coarse.T, axis=1)
        log_tau, rho = np.log(tt[best]), rr[best]
        t_step, r_step = np.log(taus[1] / taus[0]), np.log(RHO_GRID[2] / RHO_GRID[1])
        for _ in range(REFINEMENTS + 1):
            scores, tau_c, rho_c = _local_scores(
                p, lam, log_tau, rho, np.linspace(-t_step, t_step, 9), np.linspace(-r_step, r_step, 9), kind
            )
            j = np.argmax(scores, axis=1)
            log_tau, rho, corr = np.log(tau_c[rows, j]), rho_c[rows, j], scores[rows, j]
            t_step, r_step = t_step / 4, r_step / 4
        tau_out[start : start + len(p)], rho_out[start : start + len(p)], corr_out[start : start + len(p)] = (
            np.exp(log_tau),
            rho,
            corr,
        )
    beta = rho_out * _beta_scale(eigenvalues, tau_out, kind)
    if one is None:
        one = fit_effective_time(profiles, eigenvalues, decades_beyond=decades_beyond)
    better = one.correlation > corr_out
    return (
        np.where(better, one.tau, tau_out),
        np.where(better, 0.0, beta),
        np.where(better, one.correlation, corr_out),
    )


#: Columns whose values share one PCA, so one eigenvalue vector: the profiles fitted together (``normalisation``,
#: which input normalisation the patches had, where the table has it).
FIT_GROUPS = ("dataset", "kernel_size", "normalisation")


def _group_eigenvalues(g: pd.DataFrame, group: dict) -> pd.Series:
    """The one eigenvalue per component of a fit group; ValueError when its profiles are of several PCAs."""
    counts = g.groupby("component")["eigenvalue"].nunique()
    if (counts > 1).any():
        raise ValueError(
            f"the profiles of {group} are in {int(counts.max())} different PCA bases (eigenvalues differ at "
            f"components {counts.index[counts > 1].tolist()[:5]}...): one fit group needs one eigenvalue vector; "
            "give profiles of another input normalisation their own 'normalisation' value"
        )
    return g.groupby("component")["eigenvalue"].first()


def fit_frame(energy: pd.DataFrame, *, points_per_decade: int = 40, decades_beyond: float = 2.0) -> pd.DataFrame:
    """Tidy energy -> two rows per profile (every column but component, eigenvalue and energy identifies one):
    formula 'one_parameter' (tau, beta 0) and 'init_aware' (tau, beta), each with its correlation and at_bound.
    Profiles are fitted per ``FIT_GROUPS`` and kind, each group against its one eigenvalue vector."""
    value_cols = {"component", "eigenvalue", "energy"}
    id_cols = [c for c in energy.columns if c not in value_cols]
    groups = [c for c in FIT_GROUPS if c in energy.columns]
    out = []
    for values, g in energy.groupby([*groups, "kind"], sort=True):
        kind = values[-1]
        wide = g.pivot_table(index=id_cols, columns="component", values="energy", aggfunc="first")
        group = dict(zip([*groups, "kind"], values, strict=True))
        eigenvalues = _group_eigenvalues(g, group).reindex(wide.columns).to_numpy()
        profiles = wide.to_numpy()
        one = fit_effective_time(
            profiles, eigenvalues, points_per_decade=points_per_decade, decades_beyond=decades_beyond
        )
        tau, beta, corr = fit_init_aware(profiles, eigenvalues, kind, decades_beyond=decades_beyond, one=one)
        rows = wide.index.to_frame(index=False)
        out.append(rows.assign(formula="one_parameter", tau=one.tau, beta=0.0, correlation=one.correlation,
                               at_bound=one.at_bound))  # fmt: skip
        out.append(rows.assign(formula="init_aware", tau=tau, beta=beta, correlation=corr, at_bound=one.at_bound))
    return pd.concat(out, ignore_index=True)


# ------------------------------------------------------------------------ the exact linear check


def closed_form_weights(
    cov: np.ndarray, g: np.ndarray, eta: float, steps: np.ndarray | list[int]
) -> dict[int, np.ndarray]:
    """Gradient descent on 1/2 w.C.w - g.w from w = 0, in closed form: w(t) = sum_i (1 - (1 - eta lambda_i)^t) /
    lambda_i (u_i . g) u_i. (d, d) C, (K, d) g (one row per filter) -> {t: (K, d)}."""
    lam, u = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    proj = np.asarray(g, dtype=np.float64) @ u  # (K, d)
    out = {}
    for t in steps:
        # (1 - (1 - eta lam)^t) / lam, accurate for lam -> 0 (limit eta t)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = -np.expm1(t * np.log1p(-eta * lam)) / lam
        gain = np.where(np.abs(lam) > 1e-300, gain, eta * t)
        out[int(t)] = (proj * gain) @ u.T
    return out


def simulate_gradient_descent(
    patches: np.ndarray, targets: np.ndarray, eta: float, steps: np.ndarray | list[int]
) -> dict[int, np.ndarray]:
    """Full-batch gradient descent for K linear patch filters from zero: filter k minimises
    1/(2N) sum_n (p_n . w_k - y_nk)^2, i.e. w <- w - eta (C w - g) with C = P^T P / N, g = P^T y / N.
    (N, d) patches, (N, K) targets -> {t: (K, d)} at the requested steps (float64, step by step)."""
    p = np.asarray(patches, dtype=np.float64)
    n = p.shape[0]
    cov = p.T @ p / n
    g = (np.asarray(targets, dtype=np.float64).T @ p) / n  # (K, d)
    want = sorted({int(t) for t in steps})
    w = np.zeros_like(g)
    out = {0: w.copy()} if 0 in want else {}
    for t in range(1, want[-1] + 1):
        w = w - eta * (w @ cov - g)  # C is symmetric: (C w_k) for every row k
        if t in want:
            out[t] = w.copy()
    return out


def check_steps(eigenvalues: np.ndarray, eta_fraction: float, count: int, max_steps: int) -> list[int]:
    """Log-spaced steps from 1 to the step where the slowest direction has converged (tau * lambda_min = 10 with
    tau = eta t, eta = eta_fraction / lambda_max) or ``max_steps``, whichever is first."""
    lam = _floor(eigenvalues)
    last = int(min(max_steps, np.ceil(10 * lam.max() / (eta_fraction * lam.min()))))
    return sorted({int(t) for t in np.unique(np.round(np.geomspace(1, max(last, 1), count)))})


def linear_check(
    patches: np.ndarray, *, filters: int = 256, steps: np.ndarray | list[int], eta_fraction: float = 0.5, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``filters`` linear filters regressing standard-normal targets on (N, d) patches (centred here) by gradient
    descent with eta = eta_fraction / lambda_max, against the closed form (docs/method.md, The exact linear check).

    Returns (profiles: step, component, eigenvalue, profile in {simulated, closed_form, formula, formula_exp}, energy;
    summary: step, eta, filters, max_relative_weight_error, correlation_formula, correlation_formula_exp).
    """
    p = np.asarray(patches, dtype=np.float64)
    p = p - p.mean(axis=0)
    n, d = p.shape
    rng = np.random.default_rng(seed)
    targets = rng.standard_normal((n, filters))
    cov = p.T @ p / n
    lam, u = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1]
    lam, u = lam[order], u[:, order]
    eta = eta_fraction / lam[0]
    steps = sorted({int(t) for t in steps} - {0})
    sim = simulate_gradient_descent(p, targets, eta, steps)
    closed = closed_form_weights(cov, (targets.T @ p) / n, eta, steps)
    lam_f = _floor(lam)
    profiles, summary = [], []
    for t in steps:
        e_sim = np.sqrt(np.mean((sim[t] @ u) ** 2, axis=0))
        e_closed = np.sqrt(np.mean((closed[t] @ u) ** 2, axis=0))
        formula = -np.expm1(t * np.log1p(-eta * lam_f)) / np.sqrt(lam_f)
        formula_exp = formula_profile(lam, eta * t)
        for name, e in (("simulated", e_sim), ("closed_form", e_closed), ("formula", formula),
                        ("formula_exp", formula_exp)):  # fmt: skip
            profiles.append(pd.DataFrame({"step": t, "component": np.arange(1, d + 1), "eigenvalue": lam,
                                          "profile": name, "energy": e}))  # fmt: skip
        err = np.linalg.norm(sim[t] - closed[t], axis=1) / np.linalg.norm(closed[t], axis=1)
        summary.append({"step": t, "tau": eta * t, "eta": eta, "filters": filters, "patches": n,
                        "max_relative_weight_error": float(err.max()),
                        "correlation_formula": pearson(e_sim, formula),
                        "correlation_formula_exp": pearson(e_sim, formula_exp)})  # fmt: skip
    return pd.concat(profiles, ignore_index=True), pd.DataFrame(summary)
