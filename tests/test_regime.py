"""Unit tests for firstlayer.regime: which pairs of energy profiles a correlation can judge (early and late regimes
are uninformative), its nulls, and the formula's informative window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firstlayer.analysis import HIGH
from firstlayer.regime import (
    CONTROL_RATIOS,
    REGIME_THRESHOLD,
    annotate_pairs,
    bank_pair_null,
    control_frame,
    early_similarity,
    formula_regime_curve,
    informative_window,
    late_similarity,
    matched_bank_null,
    negative_control_pairs,
    null_frame,
    pair_informative,
    profile_regime,
    profile_regimes,
    random_bank_null,
    regime_frame,
    shuffled_component_null,
    spectra,
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


# ------------------------------------------------------------------------ the workflow's tables

#: run -> the tau of its snapshots at steps 100, 200, 300 (the formula's own profiles, each run at its own scale):
#: two runs early in training at different small tau, two late, two inside the window at tau and 3 tau.
RUN_TAUS = {
    ("early", 0): (1e-4, 5e-4, 1e-3), ("early", 1): (2e-4, 1e-3, 0.01),
    ("late", 0): (1e3, 2e3, 5e3), ("late", 1): (2e3, 5e3, 5e4),
    ("window", 0): (1.0, 3.0, 3.5), ("window", 1): (1.0, 3.0, 3.5),
}  # fmt: skip
STEPS = (100, 200, 300)


def snapshots(filters: int = 16) -> pd.DataFrame:
    """analysis.snapshot_profiles rows of the runs of RUN_TAUS (dataset 'd', labels 'true')."""
    rows = []
    for (arch, seed), taus in RUN_TAUS.items():
        for step, tau in zip(STEPS, taus, strict=True):
            rows.append({"dataset": "d", "arch": arch, "labels": "true", "seed": seed, "step": step, "kind": "W-W0",
                         "kernel_size": 3, "filters": filters, "profile": (1 + seed) * formula_profile(LAM, tau),
                         "formula": "one_parameter", "tau": tau, "at_bound": False})  # fmt: skip
    return pd.DataFrame(rows)


def final_pairs(*archs: str) -> pd.DataFrame:
    """Seed pairs (0 vs 1) of W - W0 at the last step, as analysis.pairwise_consistency writes them."""
    snaps = snapshots()
    last = snaps[snaps.step == STEPS[-1]].set_index(["arch", "seed"])["profile"]
    return pd.DataFrame([{"kind": "W-W0", "relation": "seed", "kernel_size": 3, "dataset_a": "d", "arch_a": arch,
                          "labels_a": "true", "seed_a": 0, "dataset_b": "d", "arch_b": arch, "labels_b": "true",
                          "seed_b": 1, "correlation": pearson(last[(arch, 0)], last[(arch, 1)])}
                         for arch in archs])  # fmt: skip


EIGENVALUES = {("d", 3): LAM}


def test_regime_frame_reads_each_snapshot_without_its_profile():
    regimes = regime_frame(snapshots(), EIGENVALUES)
    assert len(regimes) == 3 * len(RUN_TAUS) and "profile" not in regimes
    by_arch = regimes.groupby("arch")["regime"].agg(set)
    assert by_arch["early"] == {"early"} and by_arch["late"] == {"late"} and by_arch["window"] == {"informative"}
    row = regimes[(regimes.arch == "window") & (regimes.step == 100)].iloc[0]
    assert row["early_similarity"] == pytest.approx(early_similarity(formula_profile(LAM, 1.0), LAM))
    assert row["late_similarity"] == pytest.approx(late_similarity(formula_profile(LAM, 1.0), LAM))
    assert {"tau", "at_bound", "filters", "kernel_size"} <= set(regimes.columns)


def test_annotate_pairs_flags_limit_regime_pairs_that_correlate_highly():
    pairs = final_pairs("early", "late", "window")
    out = annotate_pairs(pairs, regime_frame(snapshots(), EIGENVALUES), EIGENVALUES, draws=200).set_index("arch_a")
    # the early pair (tau 1e-3 vs 0.01) and the late pair (5e3 vs 5e4) agree above the table's 0.9 ...
    assert out.loc["early", "correlation"] > HIGH and out.loc["late", "correlation"] > HIGH
    # ... and neither can say so: each side sits in a limit every network shares
    assert not out.loc["early", "informative"] and not out.loc["late", "informative"]
    assert (out.loc["early", "regime_a"], out.loc["early", "regime_b"]) == ("early", "early")
    assert (out.loc["late", "regime_a"], out.loc["late", "regime_b"]) == ("late", "late")
    assert out.loc["window", "informative"] and out.loc["window", "regime_a"] == "informative"
    assert out["informative"].dtype == "boolean" and out["regime_a"].dtype == "string"
    # the null: two untrained banks of 16 filters on this spectrum correlate highly, the same for every pair here
    null = np.median(random_bank_null(LAM, 16, np.random.default_rng(0), draws=2000))
    assert out["null_r"].nunique() == 1 and out["null_r"].iloc[0] == pytest.approx(null, abs=0.02)
    assert list(out.correlation) == list(pairs.correlation)  # the pairs themselves are untouched


def test_annotate_pairs_reads_named_snapshots_and_leaves_others_na():
    regimes = regime_frame(snapshots(), EIGENVALUES)
    pairs = final_pairs("early", "window").assign(step_a=[300, 100], step_b=[100, np.nan])
    out = annotate_pairs(pairs, regimes, EIGENVALUES, step_columns=("step_a", "step_b"), draws=100)
    assert out["informative"].iloc[0] == False  # noqa: E712  (early at both named steps)
    assert pd.isna(out["informative"].iloc[1]) and np.isnan(out["null_r"].iloc[1])  # a side without a snapshot
    other = pd.concat([final_pairs("window").assign(kind="W"), final_pairs("window").assign(arch_a="absent")])
    out = annotate_pairs(other, regimes, EIGENVALUES, draws=100)
    assert out["informative"].isna().all() and out["regime_a"].isna().all() and out["null_r"].isna().all()


def test_control_frame_separates_informative_snapshots_at_tau_and_3tau():
    snaps = snapshots()
    controls = control_frame(regime_frame(snaps, EIGENVALUES), snaps).set_index(["arch", "seed"])
    assert len(controls) == len(RUN_TAUS)
    window = controls.loc[("window", 0)]
    # steps 100 and 200 (tau 1 and 3): the largest ratio within CONTROL_RATIOS (3.5 / 1 is beyond it)
    assert (window["step_a"], window["step_b"], window["tau_ratio"]) == (100, 200, 3.0)
    expected = pearson(formula_profile(LAM, 1.0), formula_profile(LAM, 3.0))
    assert window["correlation"] == pytest.approx(expected) and expected < HIGH
    assert window["separated"] == True  # noqa: E712
    assert CONTROL_RATIOS == (2.0, 3.0)
    # runs in a limit regime have no informative snapshots: no control
    for arch in ("early", "late"):
        row = controls.loc[(arch, 0)]
        assert np.isnan(row["step_a"]) and np.isnan(row["correlation"]) and pd.isna(row["separated"])
    assert controls["separated"].dtype == "boolean"


def test_control_frame_skips_snapshots_at_the_tau_bound():
    snaps = snapshots()
    snaps["at_bound"] = (snaps.arch == "window") & (snaps.step == 100)
    controls = control_frame(regime_frame(snaps, EIGENVALUES), snaps).set_index(["arch", "seed"])
    assert np.isnan(controls.loc[("window", 0), "step_a"])  # tau 3 and 3.5 are closer than 2x


def test_control_frame_says_when_the_statistic_cannot_tell_tau_from_3tau():
    # near the window's early edge, tau and 3 tau correlate above 0.9: the control is there but not separated
    snaps = snapshots()
    snaps = snaps[snaps.arch == "window"].assign(tau=lambda d: d.step.map({100: 0.2, 200: 0.5, 300: 0.6}))
    snaps["profile"] = [(1 + s) * formula_profile(LAM, t) for s, t in zip(snaps.seed, snaps.tau, strict=True)]
    regimes = regime_frame(snaps, EIGENVALUES)
    assert (regimes.regime == "informative").all()
    row = control_frame(regimes, snaps).iloc[0]
    assert row["tau_ratio"] == pytest.approx(3.0) and row["correlation"] >= HIGH and row["separated"] == False  # noqa: E712


def test_null_frame_on_a_decaying_spectrum():
    nulls = null_frame(EIGENVALUES, [64, 16, 16], draws=300).set_index("filters")
    assert list(nulls.index) == [16, 64] and (nulls["dataset"] == "d").all() and (nulls["draws"] == 300).all()
    lo, hi = informative_window(LAM)
    assert np.isfinite(nulls[["window_tau_low", "window_tau_high"]].to_numpy()).all()
    assert (nulls["window_tau_low"] == lo).all() and (nulls["window_tau_high"] == hi).all() and lo < hi
    # untrained banks sit in the early regime, and agree the more the wider they are
    assert (nulls["null_early_share"] > 0.95).all()
    assert HIGH < nulls.loc[16, "null_r_median"] < nulls.loc[64, "null_r_median"] < 1.0
    assert (nulls["null_r_median"] <= nulls["null_r_q95"]).all()
    assert nulls["null_fit_r_median"].between(-1, 1).all()
    # reproducible from its seed
    again = null_frame(EIGENVALUES, [16], draws=300).set_index("filters")
    assert again.loc[16, "null_r_median"] == nulls.loc[16, "null_r_median"]


def test_bank_pair_null_of_one_width_and_spectrum_is_the_random_bank_null():
    same = bank_pair_null(LAM, LAM, 16, 16, np.random.default_rng(0), draws=2000)
    ref = random_bank_null(LAM, 16, np.random.default_rng(1), draws=2000)
    assert same.shape == (2000,) and np.median(same) == pytest.approx(np.median(ref), abs=0.01)
    flat = np.linspace(1.0, 0.9, LAM.size)  # another dataset's spectrum: the two banks' shapes differ
    assert np.median(bank_pair_null(LAM, flat, 16, 64, np.random.default_rng(0), draws=500)) < np.median(same)
    with pytest.raises(ValueError, match="cannot be compared"):
        bank_pair_null(LAM, LAM[:-1], 16, 16, np.random.default_rng(0))


def test_spectra_reads_each_dataset_and_kernel_size_once_in_component_order():
    energy = pd.DataFrame([{"dataset": "d", "kernel_size": 3, "component": c, "eigenvalue": LAM[c - 1],
                            "normalisation": norm, "step": step}
                           for c in range(LAM.size, 0, -1) for step in (1, 2)
                           for norm in ("dataset", "imagenet")])  # fmt: skip
    energy.loc[energy.normalisation == "imagenet", "eigenvalue"] = 7.0
    got = spectra(energy)
    assert list(got) == [("d", 3)] and np.array_equal(got[("d", 3)], LAM)
