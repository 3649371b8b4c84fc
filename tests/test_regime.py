"""Unit tests for firstlayer.regime: which pairs of energy profiles a correlation can judge (early and late regimes
are uninformative), its nulls, and the formula's informative window."""

from __future__ import annotations

import numpy as np
import pytest

from firstlayer.regime import (
    REGIME_THRESHOLD,
    early_similarity,
    formula_regime_curve,
    informative_window,
    late_similarity,
    matched_bank_null,
    negative_control_pairs,
    pair_informative,
    profile_regime,
    profile_regimes,
    random_bank_null,
    shuffled_component_null,
)
from firstlayer.theory import formula_profile, pearson

#: A 3x3x3 spectrum shaped like the embedded datasets': lambda_max = 20 (mean colour), then gradients and finer
#: structure in groups, falling over four decades.
LAM = np.array([20.0] + [1.3] * 4 + [0.27] * 3 + [0.08] * 7 + [0.012] * 6 + [0.004] * 6)


def verdict(a: np.ndarray, b: np.ndarray, rule: str = "both") -> bool:
    return pair_informative(profile_regime(a, LAM), profile_regime(b, LAM), rule)


# ------------------------------------------------------------------------ similarities


def test_similarities_of_the_limit_shapes():
    assert early_similarity(np.sqrt(LAM), LAM) == pytest.approx(1.0)
    assert late_similarity(1 / np.sqrt(LAM), LAM) == pytest.approx(1.0)
    assert early_similarity(1 / np.sqrt(LAM), LAM) < 0
    # normalising by the max changes nothing; vectorised over profiles
    e = formula_profile(LAM, np.array([0.3, 3.0]))
    assert early_similarity(e / e.max(axis=1, keepdims=True), LAM) == pytest.approx(early_similarity(e, LAM))
    assert early_similarity(e, LAM)[1] == pytest.approx(early_similarity(e[1], LAM))


def test_log_scale_late_is_minus_early():
    e = formula_profile(LAM, 2.0)
    early, late = early_similarity(e, LAM, scale="log"), late_similarity(e, LAM, scale="log")
    assert late == pytest.approx(-early)
    assert early == pytest.approx(pearson(np.log(e), np.log(LAM)))


def test_formula_curve_reproduces_the_issue_numbers():
    curve = formula_regime_curve(LAM, [0.05, 0.3, 1.0, 1e4]).set_index("tau")
    early = curve["early_similarity"]
    assert early[0.05] == pytest.approx(0.98, abs=0.01)
    assert early[0.3] == pytest.approx(0.7, abs=0.1)
    assert early[1.0] == pytest.approx(0.4, abs=0.1)
    assert curve.loc[1e4, "late_similarity"] > 0.999
    assert list(curve["regime"]) == ["early", "informative", "informative", "late"]
    # the log scale still calls tau = 0.3 nearly early, although a linear r is free there
    assert curve.loc[0.3, "early_similarity_log"] > 0.95 > curve.loc[0.3, "early_similarity"]


def test_informative_window_brackets_the_formulas_regimes():
    lo, hi = informative_window(LAM)
    assert 0.01 < lo < 0.3 and 10 < hi < 1e4
    regimes = profile_regimes(formula_profile(LAM, np.array([lo / 1.2, lo, hi, hi * 1.2])), LAM)
    assert list(regimes) == ["early", "informative", "informative", "late"]


# ------------------------------------------------------------------------ the rule


def test_two_early_profiles_are_uninformative_although_they_agree():
    a, b = formula_profile(LAM, 0.001), formula_profile(LAM, 0.02)  # 20-fold apart in tau
    assert profile_regime(a, LAM) == profile_regime(b, LAM) == "early"
    assert pearson(a, b) > 0.99  # the "yes" the regime alone gives
    assert not verdict(a, b)


def test_two_late_profiles_are_uninformative():
    a, b = formula_profile(LAM, 2e3), formula_profile(LAM, 5e4)
    assert profile_regime(a, LAM) == profile_regime(b, LAM) == "late"
    assert not verdict(a, b)


def test_informative_profiles_at_tau_and_3tau_are_called_different():
    tau, filters = 3.0, 64
    a, b = formula_profile(LAM, tau), formula_profile(LAM, 3 * tau)
    assert profile_regime(a, LAM) == profile_regime(b, LAM) == "informative"
    assert verdict(a, b)
    # different: below the 5 % quantile of two matched banks of 64 filters (and below the table's 0.9)
    matched = matched_bank_null(LAM, tau, filters, np.random.default_rng(0), draws=2000)
    threshold = np.quantile(matched, 0.05)
    assert pearson(a, b) < min(threshold, 0.9)
    assert threshold > 0.9


def test_the_rule_never_reads_the_pairs_correlation():
    a, b = formula_profile(LAM, 1.0), formula_profile(LAM, 1.2)
    other = np.abs(np.random.default_rng(3).standard_normal(LAM.size)) + 0.1  # no shape at all
    assert profile_regime(other, LAM) == profile_regime(b, LAM) == "informative"
    assert pearson(a, b) > 0.99 and abs(pearson(a, other)) < 0.3
    assert verdict(a, b) == verdict(a, other) is True
    # an early profile stays uninformative beside either partner, however they correlate with it
    early, near, far = formula_profile(LAM, 0.001), formula_profile(LAM, 0.3), formula_profile(LAM, 30.0)
    assert profile_regime(near, LAM) == profile_regime(far, LAM) == "informative"
    assert pearson(early, near) > 0.5 > 0 > pearson(early, far)
    assert verdict(early, near) == verdict(early, far) is False
    assert verdict(early, near, "either") == verdict(early, far, "either") is True


def test_rule_either_and_both():
    assert pair_informative("early", "informative", "either")
    assert not pair_informative("early", "informative", "both")
    assert not pair_informative("late", "early", "either")
    with pytest.raises(ValueError, match="unknown rule"):
        pair_informative("early", "late", "any")
    with pytest.raises(ValueError, match="unknown regime"):
        pair_informative("early", "middle")


def test_thresholds_are_parameters():
    e = formula_profile(LAM, 0.3)  # early similarity 0.64; at tau = 100 the late one is 0.78
    assert profile_regime(e, LAM) == "informative"
    assert profile_regime(e, LAM, early_max=0.6) == "early"
    assert profile_regime(formula_profile(LAM, 100.0), LAM, late_max=0.75) == "late"
    assert REGIME_THRESHOLD == pytest.approx(np.sqrt(0.9), abs=0.01)


def test_bad_profiles_are_refused():
    with pytest.raises(ValueError, match="constant"):
        profile_regime(np.ones(LAM.size), LAM)
    with pytest.raises(ValueError, match="do not match"):
        profile_regime(np.arange(5.0), LAM)
    with pytest.raises(ValueError, match="one \\(d,\\) profile"):
        profile_regime(formula_profile(LAM, np.array([1.0, 2.0])), LAM)
    with pytest.raises(ValueError, match="unknown scale"):
        early_similarity(np.arange(1.0, 28.0), LAM, scale="sqrt")


# ------------------------------------------------------------------------ nulls


def test_random_banks_agree_like_early_profiles():
    r16 = random_bank_null(LAM, 16, np.random.default_rng(0), draws=1000)
    r64 = random_bank_null(LAM, 64, np.random.default_rng(0), draws=1000)
    assert r16.shape == (1000,)
    assert 0.9 < np.median(r16) < np.median(r64) < 1.0  # more filters, less chi noise
    # untrained banks sit in the early regime
    z = np.random.default_rng(1).standard_normal((64, LAM.size)) * np.sqrt(LAM)
    assert profile_regime(np.sqrt(np.mean(z**2, axis=0)), LAM) == "early"


def test_random_bank_null_in_patch_space_matches_the_eigenbasis():
    basis = np.linalg.qr(np.random.default_rng(5).standard_normal((LAM.size, LAM.size)))[0]
    direct = random_bank_null(LAM, 16, np.random.default_rng(2), draws=20)
    via_patches = random_bank_null(LAM, 16, np.random.default_rng(2), draws=20, basis=basis)
    np.testing.assert_allclose(via_patches, direct, atol=1e-12)


def test_shuffled_component_null_has_no_shape():
    a, b = formula_profile(LAM, 0.001), formula_profile(LAM, 0.002)
    null = shuffled_component_null(a, b, np.random.default_rng(0), draws=2000)
    assert abs(null.mean()) < 0.05
    assert pearson(a, b) > null.max()  # the weak null: the shared early shape beats it
    with pytest.raises(ValueError, match="one length"):
        shuffled_component_null(a, b[:-1], np.random.default_rng(0))


# ------------------------------------------------------------------------ negative control


def test_negative_control_pairs_are_informative_snapshots_2_to_3_apart():
    steps = 2 ** np.arange(16)
    taus = 0.02 * steps
    regimes = profile_regimes(formula_profile(LAM, taus), LAM)
    pairs = negative_control_pairs(steps, taus, regimes)
    assert len(pairs) > 3
    assert np.allclose(pairs["tau_ratio"], 2.0)
    inside = dict(zip(steps, regimes, strict=True))
    assert all(inside[s] == "informative" for s in [*pairs["step_a"], *pairs["step_b"]])
    assert set(regimes) == {"early", "informative", "late"}  # both ends were there to leave out
    with pytest.raises(ValueError, match="min_ratio"):
        negative_control_pairs(steps, taus, regimes, min_ratio=4.0)
