"""When can a correlation between two energy profiles say anything? Both limits of the linear-systems formula are
shared by every network: early in training e_i ∝ sqrt(lambda_i), late e_i ∝ 1/sqrt(lambda_i), whatever the labels
or the architecture. A pair of profiles is informative only where neither sits in one of those regimes.

The regime of a profile is measured without the formula: its Pearson correlation over components with sqrt(lambda)
(the early shape) and with 1/sqrt(lambda) (the late shape). The rule reads the two profiles one at a time and the
data's spectrum, never the pair's own correlation. Its thresholds are parameters; the defaults are placeholders
(argued below), to be calibrated on seeds no shipped grid uses, never on a result they judge.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from firstlayer.energy import energy_profile
from firstlayer.theory import EIGENVALUE_FLOOR, formula_profile, tau_grid

#: Default threshold on the early and on the late similarity (a placeholder, to be calibrated on seeds no shipped
#: grid uses). About sqrt(0.9): two profiles whose similarity to the same limit shape is rho_a, rho_b and whose
#: residuals are independent correlate at about rho_a * rho_b, so above sqrt(0.9) the limit shape alone gives the
#: replication table's "high" r = 0.9 (the worst case is rho_a rho_b - sqrt((1 - rho_a^2)(1 - rho_b^2))).
REGIME_THRESHOLD = 0.95

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
    """(P, d) profiles -> (P,) regimes: 'early' where early_similarity >= early_max, 'late' where late_similarity >=
    late_max (the larger similarity wins if both are), else 'informative'."""
    _check_thresholds(early_max, late_max)
    early = np.atleast_1d(early_similarity(energy, eigenvalues, scale=scale))
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
    tell runs apart at that resolution. min_ratio 2 is the matched-tau tolerance (docs/method.md, Matched effective
    time): closer pairs count as comparable there."""
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
