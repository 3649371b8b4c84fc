"""When can a correlation between two energy profiles say anything? Both limits of the linear-systems formula are
shared by every network: early in training e_i ∝ sqrt(lambda_i) (from a small init; from a large one the init's
decay adds e_i ∝ lambda_i), late e_i ∝ 1/sqrt(lambda_i), whatever the labels or the architecture. A pair of
profiles is informative only where neither sits in one of those regimes.

The regime of a profile is measured without the formula: its Pearson correlation over components with sqrt(lambda)
and with lambda (the early shapes) and with 1/sqrt(lambda) (the late shape). The rule reads the two profiles one
at a time and the data's spectrum, never the pair's own correlation (docs/method.md, When a comparison can say
no). The workflow's
tables: ``regime_frame`` (every snapshot's regime), ``null_frame`` (untrained banks), ``control_frame`` (each
run's negative control) and ``annotate_pairs`` (a pair's regimes and null).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from firstlayer.analysis import HIGH, RUN_KEYS
from firstlayer.energy import energy_profile
from firstlayer.theory import EIGENVALUE_FLOOR, fit_effective_time, formula_profile, pearson, tau_grid

#: Threshold on the early and on the late similarity: sqrt(HIGH). Two profiles whose similarity to the same limit
#: shape is rho_a, rho_b and whose residuals are independent correlate at about rho_a * rho_b, so at sqrt(HIGH) the
#: limit shape alone gives the replication table's "high" r (the worst case is rho_a rho_b - sqrt((1 - rho_a^2)(1 -
#: rho_b^2))). Checked on seeds no shipped grid uses (docs/method.md, When a comparison can say no).
REGIME_THRESHOLD = float(np.sqrt(HIGH))
#: A negative control pairs one run's informative snapshots whose tau differ by a factor in this range.
CONTROL_RATIOS = (2.0, 3.0)

REGIMES = ("early", "late", "informative")
SCALES = ("linear", "log")
PAIR_RULES = ("both", "either")


def _spectrum(eigenvalues: np.ndarray) -> np.ndarray:
    """(d,) eigenvalues as float64, floored like the formula's (EIGENVALUE_FLOOR * lambda_max); checked."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or lam.size < 3 or not np.all(np.isfinite(lam)) or lam.max() <= 0:
        raise ValueError(f"eigenvalues must be a finite (d,) vector with d >= 3 and a positive maximum, got {lam}")
    return np.maximum(lam, lam.max() * EIGENVALUE_FLOOR)


def _profiles(energy: np.ndarray, d: int) -> np.ndarray:
    """(..., d) energy profiles as float64, checked: finite, non-negative, not constant."""
    e = np.asarray(energy, dtype=np.float64)
    if e.ndim == 0 or e.shape[-1] != d:
        raise ValueError(f"energy profiles of shape {e.shape} do not match {d} eigenvalues")
    if not np.all(np.isfinite(e)) or np.any(e < 0):
        raise ValueError("energy profiles must be finite and non-negative")
    if np.any(np.ptp(e, axis=-1) == 0):
        raise ValueError("an energy profile is constant (e.g. W - W0 at step 0): its shape is undefined")
    return e


def _corr(x: np.ndarray, y: np.ndarray) -> np.ndarray | float:
    """Pearson correlation over the last axis of (..., d) x with (d,) y -> (...) (a float for a single profile)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean()
    r = (xc @ yc) / (np.linalg.norm(xc, axis=-1) * np.linalg.norm(yc))
    return float(r) if np.ndim(r) == 0 else r


def _similarity(energy: np.ndarray, eigenvalues: np.ndarray, power: float, scale: str) -> np.ndarray | float:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    lam = _spectrum(eigenvalues)
    e = _profiles(energy, lam.size)
    if scale == "linear":
        return _corr(e, lam**power)
    floor = e.max(axis=-1, keepdims=True) * EIGENVALUE_FLOOR  # a zero entry would make log(e) -inf
    return _corr(np.log(np.maximum(e, floor)), power * np.log(lam))


def early_similarity(energy: np.ndarray, eigenvalues: np.ndarray, *, scale: str = "linear") -> np.ndarray | float:
    """(..., d) profiles and (d,) eigenvalues -> (...) Pearson correlation with the early shape sqrt(lambda).

    scale 'linear' (the default) correlates the profiles as they are; normalising a profile by its max first gives
    the same number, a Pearson correlation being scale-free. scale 'log' correlates log e with log sqrt(lambda), so
    every component counts alike, and its late similarity is then exactly minus the early one. The default is
    linear because the correlation whose informativeness is judged (the replication table's r) is a linear one: a
    profile that follows sqrt(lambda) on the few strong components, which dominate a linear r, forces that r up
    however its weak components look. On the log scale such a profile can look far from sqrt(lambda) and pass as
    informative, while a log-scale similarity near 1 (at tau = 0.3 on a lambda_max = 20 spectrum, 0.96) still
    leaves a linear r free (linear similarity 0.65 there).
    """
    return _similarity(energy, eigenvalues, 0.5, scale)


def late_similarity(energy: np.ndarray, eigenvalues: np.ndarray, *, scale: str = "linear") -> np.ndarray | float:
    """(..., d) profiles and (d,) eigenvalues -> (...) Pearson correlation with the late shape 1/sqrt(lambda) (the
    whitening limit); scales as in ``early_similarity``."""
    return _similarity(energy, eigenvalues, -0.5, scale)


def decay_similarity(energy: np.ndarray, eigenvalues: np.ndarray, *, scale: str = "linear") -> np.ndarray | float:
    """(..., d) profiles and (d,) eigenvalues -> (...) Pearson correlation with lambda: the early shape of W - W0
    from a non-small init, whose first steps shrink each init projection in proportion to lambda_i whatever the
    labels (the init-decay term of the init-aware formula); scales as in ``early_similarity``."""
    return _similarity(energy, eigenvalues, 1.0, scale)


def mixed_early_similarity(energy: np.ndarray, eigenvalues: np.ndarray) -> np.ndarray | float:
    """(..., d) profiles and (d,) eigenvalues -> (...) Pearson correlation of each profile with its best early shape
    sqrt(a lambda^2 + b lambda), a, b >= 0 (non-negative least squares on e^2): early in training each projection
    moves by tau (lambda_i w0_i + label term), so e_i^2 mixes the init's decay (lambda^2) and a label-free sum of
    patches (lambda) whatever the mix; either alone is ``decay_similarity`` or ``early_similarity``."""
    lam = _spectrum(eigenvalues)
    e = _profiles(energy, lam.size)
    basis = np.stack([lam**2, lam], axis=1) / np.array([lam.max() ** 2, lam.max()])  # (d, 2), columns of unit scale
    flat = e.reshape(-1, lam.size) ** 2
    shapes = np.empty_like(flat)
    for i, target in enumerate(flat):
        coef = _nnls(basis, target)
        shapes[i] = np.sqrt(basis @ coef)
    r = np.array([_corr(a, b) if np.ptp(b) > 0 else -1.0 for a, b in zip(e.reshape(-1, lam.size), shapes, strict=True)])
    return float(r[0]) if e.ndim == 1 else r.reshape(e.shape[:-1])


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min ||a x - b|| over x >= 0 for a (d, 2): the unconstrained solution if non-negative, else the best of the
    two one-column fits (the optimum of a two-variable problem lies on an edge when not inside)."""
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    if np.all(x >= 0):
        return x
    best, cost = np.zeros(2), float(b @ b)
    for j in range(2):
        c = max(float(a[:, j] @ b) / float(a[:, j] @ a[:, j]), 0.0)
        trial = np.zeros(2)
        trial[j] = c
        if (r := float(np.sum((a @ trial - b) ** 2))) < cost:
            best, cost = trial, r
    return best


def _check_thresholds(early_max: float, late_max: float) -> None:
    for name, value in (("early_max", early_max), ("late_max", late_max)):
        if not -1.0 < float(value) <= 1.0:
            raise ValueError(f"{name} must be in (-1, 1], got {value!r}")


def profile_regimes(
    energy: np.ndarray,
    eigenvalues: np.ndarray,
    *,
    early_max: float = REGIME_THRESHOLD,
    late_max: float = REGIME_THRESHOLD,
    scale: str = "linear",
) -> np.ndarray:
    """(P, d) profiles -> (P,) regimes: 'early' where the early, decay or mixed early similarity >= early_max (every
    early shape is label-free: sqrt(lambda) from a small init, lambda from the decay of a large one, and their mix
    ``mixed_early_similarity``), 'late' where
    late_similarity >= late_max (the larger similarity wins if both are), else 'informative'."""
    _check_thresholds(early_max, late_max)
    early = np.maximum.reduce([
        np.atleast_1d(early_similarity(energy, eigenvalues, scale=scale)),
        np.atleast_1d(decay_similarity(energy, eigenvalues, scale=scale)),
        np.atleast_1d(mixed_early_similarity(energy, eigenvalues)) if scale == "linear" else -np.inf,
    ])  # fmt: skip
    late = np.atleast_1d(late_similarity(energy, eigenvalues, scale=scale))
    is_early = (early >= early_max) & ~((late >= late_max) & (late > early))
    is_late = (late >= late_max) & ~is_early
    return np.where(is_early, "early", np.where(is_late, "late", "informative"))


def profile_regime(
    energy: np.ndarray,
    eigenvalues: np.ndarray,
    *,
    early_max: float = REGIME_THRESHOLD,
    late_max: float = REGIME_THRESHOLD,
    scale: str = "linear",
) -> str:
    """(d,) profile and (d,) eigenvalues -> 'early' | 'late' | 'informative' (see ``profile_regimes``)."""
    e = np.asarray(energy)
    if e.ndim != 1:
        raise ValueError(f"profile_regime takes one (d,) profile, got shape {e.shape}; use profile_regimes")
    return str(profile_regimes(e[None], eigenvalues, early_max=early_max, late_max=late_max, scale=scale)[0])


def pair_informative(regime_a: str, regime_b: str, rule: str = "both") -> bool:
    """Two profiles' regimes -> whether their correlation can say anything about what the two runs learned.

    rule 'both' (the default): both profiles must be 'informative'. A profile in a limit regime is set by the
    data's spectrum and the training time alone, not by what its run learned, so a comparison with it tests
    nothing about labels or architectures: a "yes" is forced when both sit in the same limit, and a "no" can come
    from the other run having trained further. 'either' (one informative profile suffices) is kept for
    comparison only; it lets an early profile stand in for a run that has not yet expressed anything.
    """
    for r in (regime_a, regime_b):
        if r not in REGIMES:
            raise ValueError(f"unknown regime {r!r}; allowed: {', '.join(REGIMES)}")
    if rule == "both":
        return regime_a == "informative" and regime_b == "informative"
    if rule == "either":
        return regime_a == "informative" or regime_b == "informative"
    raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(PAIR_RULES)}")


# ------------------------------------------------------------------------ nulls


def _check_draws(filters: int, draws: int) -> None:
    if int(filters) < 1 or int(draws) < 1:
        raise ValueError(f"filters and draws must be at least 1, got filters={filters}, draws={draws}")


def _bank_profiles(gain: np.ndarray, filters: int, rng: np.random.Generator, draws: int, basis: np.ndarray | None):
    """(d,) per-component gain -> (draws, 2, d) profiles of pairs of banks with projections gain_i * z, z ~ N(0, 1)."""
    d = gain.size
    z = rng.standard_normal((draws, 2, filters, d)) * gain
    if basis is None:  # the projections on u_i are the coefficients themselves
        return np.sqrt(np.mean(z**2, axis=2))
    u = np.asarray(basis, dtype=np.float64)
    if u.shape != (d, d):
        raise ValueError(f"basis of shape {u.shape} does not match {d} eigenvalues")
    return np.stack([[energy_profile(bank @ u.T, u) for bank in pair] for pair in z])


def _pair_correlations(profiles: np.ndarray) -> np.ndarray:
    a, b = profiles[:, 0], profiles[:, 1]
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def random_bank_null(
    eigenvalues: np.ndarray,
    filters: int,
    rng: np.random.Generator,
    draws: int = 1000,
    *,
    basis: np.ndarray | None = None,
) -> np.ndarray:
    """(d,) eigenvalues -> (draws,) correlations between the profiles of two independent untrained banks of
    ``filters`` random patch combinations w = C^(1/2) z, z ~ N(0, I): profiles ∝ sqrt(lambda) up to chi noise. No
    learning at all, so a "yes" must beat this. With a (d, d) basis (eigenvectors as columns) the filters are built
    in patch space and projected back (the same numbers up to rounding)."""
    _check_draws(filters, draws)
    lam = _spectrum(eigenvalues)
    return _pair_correlations(_bank_profiles(np.sqrt(lam), int(filters), rng, int(draws), basis))


def matched_bank_null(
    eigenvalues: np.ndarray, tau: float, filters: int, rng: np.random.Generator, draws: int = 1000
) -> np.ndarray:
    """(d,) eigenvalues -> (draws,) correlations between two independent banks of ``filters`` linear filters at the
    same effective time tau (projections (1 - exp(-tau lambda_i)) / sqrt(lambda_i) z, from zero): what two matched
    profiles give with the noise of a finite bank; tau -> 0 is ``random_bank_null``'s shape."""
    _check_draws(filters, draws)
    if not float(tau) > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    lam = _spectrum(eigenvalues)
    return _pair_correlations(_bank_profiles(formula_profile(lam, float(tau)), int(filters), rng, int(draws), None))


def shuffled_component_null(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, draws: int = 1000) -> np.ndarray:
    """(d,) profiles a and b -> (draws,) correlations of a with b's components in random order: what two profiles
    of these values give with no shared shape (a weak null: the early regime's shared shape already beats it)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"profiles must be two (d,) vectors of one length, got {a.shape} and {b.shape}")
    _check_draws(1, draws)
    perm = rng.permuted(np.tile(np.arange(b.size), (int(draws), 1)), axis=1)
    return _pair_correlations(np.stack([np.broadcast_to(a, perm.shape), b[perm]], axis=1))


# ------------------------------------------------------------------------ where the window is


def formula_regime_curve(
    eigenvalues: np.ndarray,
    taus: np.ndarray,
    *,
    early_max: float = REGIME_THRESHOLD,
    late_max: float = REGIME_THRESHOLD,
    ratio: float = 3.0,
) -> pd.DataFrame:
    """(d,) eigenvalues and (T,) taus -> one row per tau: the formula's early and late similarity (linear and log
    scale), its regime (linear scale) and its correlation with the formula at ratio * tau (what a pair of snapshots
    of one run at tau and ratio * tau gives without noise)."""
    lam = _spectrum(eigenvalues)
    t = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if t.ndim != 1 or not np.all(t > 0):
        raise ValueError("taus must be a (T,) vector of positive numbers")
    f = formula_profile(lam, t)  # (T, d)
    g = formula_profile(lam, ratio * t)
    return pd.DataFrame({
        "tau": t,
        "early_similarity": early_similarity(f, lam), "late_similarity": late_similarity(f, lam),
        "early_similarity_log": early_similarity(f, lam, scale="log"),
        "late_similarity_log": late_similarity(f, lam, scale="log"),
        "regime": profile_regimes(f, lam, early_max=early_max, late_max=late_max),
        f"correlation_at_{ratio:g}tau": np.array([_corr(a, b) for a, b in zip(f, g, strict=True)]),
    })  # fmt: skip


def informative_window(
    eigenvalues: np.ndarray,
    *,
    early_max: float = REGIME_THRESHOLD,
    late_max: float = REGIME_THRESHOLD,
    points_per_decade: int = 40,
) -> tuple[float, float]:
    """(d,) eigenvalues -> (tau_lo, tau_hi): the first and last tau of theory.tau_grid at which the formula's own
    profile is 'informative' (nan, nan if none is)."""
    lam = _spectrum(eigenvalues)
    taus = tau_grid(lam, points_per_decade)
    inside = taus[profile_regimes(formula_profile(lam, taus), lam, early_max=early_max, late_max=late_max)
                  == "informative"]  # fmt: skip
    return (float(inside[0]), float(inside[-1])) if inside.size else (float("nan"), float("nan"))


def negative_control_pairs(
    steps: np.ndarray, taus: np.ndarray, regimes: np.ndarray, *, min_ratio: float = 2.0, max_ratio: float = 3.0
) -> pd.DataFrame:
    """One run's snapshots: (S,) steps, fitted taus and regimes -> the pairs (step_a, step_b, tau_a, tau_b,
    tau_ratio) with both snapshots 'informative' and min_ratio <= tau_b / tau_a <= max_ratio. Their profiles differ
    by construction, so the pair statistic must call them different: a statistic that calls them the same cannot
    tell runs apart at that resolution. min_ratio 2 stays clear of the matched-tau tolerance (a factor sqrt(2),
    docs/method.md, Matched effective time), within which snapshots count as comparable."""
    steps, taus, regimes = np.asarray(steps), np.asarray(taus, dtype=np.float64), np.asarray(regimes)
    if not steps.shape == taus.shape == regimes.shape or steps.ndim != 1:
        raise ValueError(f"steps, taus and regimes must be (S,) of one length, got {steps.shape}, {taus.shape}, "
                         f"{regimes.shape}")  # fmt: skip
    if not 1.0 <= min_ratio <= max_ratio:
        raise ValueError(f"need 1 <= min_ratio <= max_ratio, got {min_ratio}, {max_ratio}")
    rows = []
    for i, j in itertools.permutations(range(steps.size), 2):
        if regimes[i] == regimes[j] == "informative" and taus[i] > 0:
            ratio = taus[j] / taus[i]
            if min_ratio <= ratio <= max_ratio:
                rows.append({"step_a": steps[i], "step_b": steps[j], "tau_a": taus[i], "tau_b": taus[j],
                             "tau_ratio": ratio})  # fmt: skip
    columns = ["step_a", "step_b", "tau_a", "tau_b", "tau_ratio"]
    return pd.DataFrame(rows, columns=columns).sort_values(["tau_a", "tau_b"], ignore_index=True)


# ------------------------------------------------------------------------ the workflow's tables


def bank_pair_null(
    eigenvalues_a: np.ndarray,
    eigenvalues_b: np.ndarray,
    filters_a: int,
    filters_b: int,
    rng: np.random.Generator,
    draws: int = 1000,
) -> np.ndarray:
    """``random_bank_null`` for a pair of banks that may differ in width and in spectrum (e.g. two datasets of one
    kernel size): (draws,) correlations of the two untrained banks' profiles."""
    _check_draws(min(filters_a, filters_b), draws)
    lam_a, lam_b = _spectrum(eigenvalues_a), _spectrum(eigenvalues_b)
    if lam_a.shape != lam_b.shape:
        raise ValueError(f"spectra of {lam_a.size} and {lam_b.size} components cannot be compared")
    a = _bank_profiles(np.sqrt(lam_a), int(filters_a), rng, int(draws), None)[:, 0]
    b = _bank_profiles(np.sqrt(lam_b), int(filters_b), rng, int(draws), None)[:, 0]
    return _pair_correlations(np.stack([a, b], axis=1))


def spectra(energy: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """Tidy energy -> {(dataset, kernel_size): (d,) eigenvalues in component order} of the runs' own PCA."""
    e = energy[energy["normalisation"] == "dataset"] if "normalisation" in energy else energy
    first = e.drop_duplicates(["dataset", "kernel_size", "component"]).sort_values("component")
    groups = first.groupby(["dataset", "kernel_size"])
    return {(d, int(k)): g["eigenvalue"].to_numpy(np.float64) for (d, k), g in groups}


def regime_frame(snapshots: pd.DataFrame, eigenvalues: dict[tuple[str, int], np.ndarray]) -> pd.DataFrame:
    """``analysis.snapshot_profiles`` rows (run, step, profile, tau, at_bound) -> one row per snapshot with its early
    and late similarity and regime at ``REGIME_THRESHOLD`` (profile dropped)."""
    rows = []
    for (dataset, k), g in snapshots.groupby(["dataset", "kernel_size"], sort=True):
        lam = eigenvalues[(dataset, int(k))]
        p = np.stack(g["profile"].to_numpy())
        rows.append(g.drop(columns="profile").assign(
            early_similarity=np.atleast_1d(early_similarity(p, lam)),
            decay_similarity=np.atleast_1d(decay_similarity(p, lam)),
            mixed_early_similarity=np.atleast_1d(mixed_early_similarity(p, lam)),
            late_similarity=np.atleast_1d(late_similarity(p, lam)),
            regime=profile_regimes(p, lam),
        ))  # fmt: skip
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def null_frame(
    eigenvalues: dict[tuple[str, int], np.ndarray], widths: Sequence[int], *, draws: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Per (dataset, kernel_size, filters): the informative window of tau, and what untrained random banks of that
    width give: the median and 95th percentile of two banks' correlation, the share of their profiles the rule calls
    'early', and the median r of the one-parameter formula fitted to their profiles (the null of the formula fits)."""
    rows = []
    for (dataset, k), lam in sorted(eigenvalues.items()):
        lo, hi = informative_window(lam)
        for filters in sorted({int(w) for w in widths}):
            rng = np.random.default_rng([seed, int(k), filters])
            r = random_bank_null(lam, filters, rng, draws)
            profiles = _bank_profiles(np.sqrt(_spectrum(lam)), filters, rng, draws, None)[:, 0]
            rows.append({
                "dataset": dataset, "kernel_size": int(k), "filters": filters, "draws": int(draws),
                "window_tau_low": lo, "window_tau_high": hi,
                "null_r_median": float(np.median(r)), "null_r_q95": float(np.quantile(r, 0.95)),
                "null_early_share": float(np.mean(profile_regimes(profiles, lam) == "early")),
                "null_fit_r_median": float(np.median(fit_effective_time(profiles, lam).correlation)),
            })  # fmt: skip
    return pd.DataFrame(rows)


def control_frame(regimes: pd.DataFrame, snapshots: pd.DataFrame, ratios: tuple[float, float] = CONTROL_RATIOS):
    """Per run: its negative control, the pair of its informative snapshots (fits off the tau grid's bound) whose
    tau ratio is the largest within ``ratios``, and the Pearson r of their profiles; 'separated' when r < HIGH, what
    the replication table's statistic must say of two profiles that differ. A run with no such pair has NaN steps."""
    profiles = snapshots.set_index([*RUN_KEYS, "step"])["profile"]
    rows = []
    for keys, g in regimes.groupby(RUN_KEYS, sort=True):
        g = g[~g["at_bound"].astype(bool)].sort_values("step")
        pairs = negative_control_pairs(g["step"].to_numpy(), g["tau"].to_numpy(), g["regime"].to_numpy(),
                                       min_ratio=ratios[0], max_ratio=ratios[1])  # fmt: skip
        row = {**dict(zip(RUN_KEYS, keys, strict=True)), "kernel_size": int(g["kernel_size"].iloc[0]) if len(g) else
               np.nan, "step_a": np.nan, "step_b": np.nan, "tau_a": np.nan, "tau_b": np.nan, "tau_ratio": np.nan,
               "correlation": np.nan, "separated": pd.NA}  # fmt: skip
        if len(pairs):
            best = pairs.sort_values(["tau_ratio", "tau_a"]).iloc[-1]  # ties: the later pair, deeper in the window
            r = pearson(profiles[(*keys, best["step_a"])], profiles[(*keys, best["step_b"])])
            row.update({k: best[k] for k in ("step_a", "step_b", "tau_a", "tau_b", "tau_ratio")},
                       correlation=r, separated=bool(r < HIGH))  # fmt: skip
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.astype({"separated": "boolean"}) if len(out) else out


def annotate_pairs(
    pairs: pd.DataFrame,
    regimes: pd.DataFrame,
    eigenvalues: dict[tuple[str, int], np.ndarray],
    *,
    step_columns: tuple[str, str] | None = None,
    draws: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Pairs of W - W0 profiles (consistency or matched-tau rows) -> the same with each side's regime, ``informative``
    (both sides 'informative': ``pair_informative``) and ``null_r``, the median correlation of two untrained random
    banks of the two runs' widths on their spectra. The sides' snapshots are each run's last (``step_columns`` None)
    or those named by the two columns. Pairs of other kinds, or sides without a regime, get NA."""
    reg = regimes.set_index([*RUN_KEYS, "step"])
    last = regimes.groupby(RUN_KEYS)["step"].max()
    out = pairs.copy()
    cache: dict[tuple, float] = {}
    regime_a, regime_b, informative, null = [], [], [], []
    for row in pairs.to_dict("records"):
        sides = []
        for i, side in enumerate("ab"):
            run = tuple(row[f"{k}_{side}"] for k in RUN_KEYS)
            step = last.get(run) if step_columns is None else row[step_columns[i]]
            hit = row["kind"] == "W-W0" and step == step and (*run, step) in reg.index
            sides.append(reg.loc[(*run, step)] if hit else None)
        if any(s is None for s in sides):
            regime_a.append(pd.NA), regime_b.append(pd.NA), informative.append(pd.NA), null.append(np.nan)
            continue
        a, b = sides
        regime_a.append(a["regime"]), regime_b.append(b["regime"])
        informative.append(pair_informative(a["regime"], b["regime"]))
        key = (row["dataset_a"], row["dataset_b"], int(row["kernel_size"]), int(a["filters"]), int(b["filters"]))
        if key not in cache:
            rng = np.random.default_rng([seed, *key[2:]])
            lam_a, lam_b = eigenvalues[(key[0], key[2])], eigenvalues[(key[1], key[2])]
            cache[key] = float(np.median(bank_pair_null(lam_a, lam_b, key[3], key[4], rng, draws)))
        null.append(cache[key])
    out["regime_a"], out["regime_b"] = pd.array(regime_a, dtype="string"), pd.array(regime_b, dtype="string")
    out["informative"] = pd.array(informative, dtype="boolean")
    out["null_r"] = np.asarray(null, dtype=np.float64)
    return out
