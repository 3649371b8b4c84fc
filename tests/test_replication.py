"""The replication table: every claim row comes from the tables given, says 'not run' when its experiment is
missing, and judges an agreement on informative pairs only, beside the verdict of the criterion before 2026-12-03
(docs/method.md, Replication criteria; When a comparison can say no)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firstlayer.analysis import HIGH as ANALYSIS_HIGH
from firstlayer.analysis import RUN_KEYS, consistency_summary, final_profiles, pairwise_consistency
from firstlayer.regime import annotate_pairs, regime_frame
from firstlayer.replication import (
    CHANGED,
    COLUMNS,
    HIGH,
    LEARNED_MARGIN,
    MIN_PAIRS,
    VERDICTS,
    judge,
    replication_table,
    to_markdown,
    verdict,
)
from firstlayer.theory import formula_profile

#: The analysis settings (config analysis:), with a small bootstrap.
ANALYSIS = {"bootstrap": 200, "confidence": 0.95, "null_draws": 200}
#: The claim suffix of the rows under the criterion before CHANGED.
RECORD = f"(criterion before {CHANGED}, for the record)"
SEEDS = (0, 1, 2)


def run(arch: str, labels: str, seed: int, dataset: str = "rot") -> dict:
    return {"dataset": dataset, "arch": arch, "labels": labels, "seed": seed}


def pair(relation: str, a: dict, b: dict, r: float, informative=True, **kw) -> dict:
    """A W - W0 pair of runs as consistency (annotated by regime.annotate_pairs) writes it."""
    sides = {f"{k}_{s}": side[k] for s, side in (("a", a), ("b", b)) for k in RUN_KEYS}
    return {"kind": "W-W0", "relation": relation, "kernel_size": 3, **sides, "correlation": r,
            "informative": informative, "null_r": 0.96, **kw}  # fmt: skip


def matched_pair(relation: str, a: dict, b: dict, r: float, distance: float, informative=True) -> dict:
    """A pair of runs at matched tau (analysis.matched_tau, annotated): matched when within the tolerance."""
    return pair(
        relation,
        a,
        b,
        r,
        informative,
        correlation_final=np.nan,
        step_a=100,
        step_b=100,
        tau_a=2.0,
        tau_b=2.0 * np.exp(distance),
        log_tau_distance=distance,
        matched=distance <= np.log(np.sqrt(2)),
    )


def summary_row(kind: str, rel: str, arch: str, n: int, mean: float, lo: float, hi: float, informative=None) -> dict:
    """A consistency_summary row; ``informative``: (n, mean, ci_low, ci_high) over the informative pairs."""
    row = {"kind": kind, "relation": rel, "arch": arch, "n": n, "mean": mean, "ci_low": lo, "ci_high": hi}
    if informative is not None:
        keys = ("informative_n", "informative_mean", "informative_ci_low", "informative_ci_high")
        row |= dict(zip(keys, informative, strict=True)) | {"null_r": 0.96}
    return row


def tables(corr_seed: float = 0.95, frozen_gap: float = -0.02, labels_corr: float = 0.8) -> dict:
    """Every input of replication_table for one dataset 'rot': a linear CNN and a small CNN, true and random labels,
    three seeds; every pair informative, every run with a separated negative control."""
    lin, cnn = "linear", "small_cnn"
    seed_pairs = [pair("seed", run(lin, lab, a), run(lin, lab, b), corr_seed) for lab in ("true", "random")
                  for a, b in ((0, 1), (0, 2), (1, 2))]  # fmt: skip
    arch_pairs = [pair("architecture", run(lin, lab, s), run(cnn, lab, s), 0.85) for lab in ("true", "random")
                  for s in (0, 1)]  # fmt: skip
    label_pairs = [pair("labels", run(lin, "true", s), run(lin, "random", s), labels_corr) for s in SEEDS]
    pairs = pd.DataFrame([*seed_pairs, *arch_pairs, *label_pairs])
    summary = pd.DataFrame([
        summary_row("W-W0", "seed", lin, 6, corr_seed, corr_seed - 0.01, corr_seed + 0.01,
                    (6, corr_seed, corr_seed - 0.01, corr_seed + 0.01)),
        summary_row("W-W0", "architecture", "(mixed)", 4, 0.85, 0.8, 0.88, (4, 0.85, 0.8, 0.88)),
        summary_row("W", "trained vs init", lin, 4, 0.3, 0.2, 0.4),
        summary_row("W", "seed", lin, 2, 0.9, 0.85, 0.95),
    ])  # fmt: skip
    arch_matched = [matched_pair("architecture", run(lin, lab, s), run(cnn, lab, s), 0.93, 0.2)
                    for lab, s in (("true", 0), ("true", 1), ("random", 0))]  # fmt: skip
    arch_matched.append(matched_pair("architecture", run(lin, "random", 1), run(cnn, "random", 1), 0.5, 1.0))
    matched = pd.DataFrame([
        *(matched_pair("seed", run(lin, lab, a), run(lin, lab, b), 0.97, 0.1) for lab in ("true", "random")
          for a, b in ((0, 1), (0, 2), (1, 2))),
        *arch_matched,  # 3 of 4 matched
        *(matched_pair("labels", run(lin, "true", s), run(lin, "random", s), 0.92, 0.3) for s in SEEDS),
    ])  # fmt: skip
    controls = pd.DataFrame([{**run(arch, lab, s), "kernel_size": 3, "step_a": 30, "step_b": 100, "tau_a": 1.0,
                              "tau_b": 2.5, "tau_ratio": 2.5, "correlation": 0.7, "separated": True}
                             for arch in (lin, cnn) for lab in ("true", "random") for s in SEEDS])  # fmt: skip
    fits, regimes = [], []
    for formula, bump in (("one_parameter", 0.0), ("init_aware", 0.01)):
        for seed in (0, 1):
            for step, tau, corr in ((10, 1.0, 0.97), (100, 5.0, 0.96), (1000, 20.0, 0.9)):
                fits.append({"formula": formula, "kind": "W-W0", "model": lin, "arch": lin, "dataset": "rot",
                             "labels": "true", "seed": seed, "step": step, "kernel_size": 3, "tau": tau,
                             "correlation": corr + bump, "at_bound": False})  # fmt: skip
        for seed in SEEDS:
            fits.append({"formula": formula, "kind": "W-W0", "model": cnn, "arch": cnn, "dataset": "rot",
                         "labels": "true", "seed": seed, "step": 300, "kernel_size": 3, "tau": 3.0,
                         "correlation": 0.93 + bump, "at_bound": False})  # fmt: skip
    for seed in (0, 1):  # the linear CNN's last snapshot is in the late regime: its fit r 0.9 is not judged
        for step, regime in ((10, "informative"), (100, "informative"), (1000, "late")):
            regimes.append({**run(lin, "true", seed), "step": step, "kernel_size": 3, "filters": 16,
                            "regime": regime})  # fmt: skip
    regimes += [{**run(cnn, "true", s), "step": 300, "kernel_size": 3, "filters": 16, "regime": "informative"}
                for s in SEEDS]  # fmt: skip
    nulls = pd.DataFrame([{"dataset": "rot", "kernel_size": 3, "filters": 16, "null_r_median": 0.96,
                           "null_fit_r_median": 0.6}])  # fmt: skip
    gaussian = pd.DataFrame([{"dataset": "rot", "kernel_size": 3, "first_order": 1e-4,
                              "first_order_null_mean": 1e-4, "second_order": 2e-3, "second_order_null_mean": 1.9e-3,
                              "second_order_z": 0.5}])  # fmt: skip
    whitening = pd.DataFrame([{"dataset": "rot", "arch": "linear", "labels": "true", "n_seeds": 2, "data": 0.3,
                               "init": 0.3, "trained": 0.6, "fraction_flatter_than_init": 1.0}])  # fmt: skip
    frozen = pd.DataFrame([{"dataset": "rot", "arch": "small_cnn", "test_accuracy_trained": 0.8,
                            "test_accuracy_frozen": 0.8 + frozen_gap, "difference": frozen_gap}])  # fmt: skip
    check = pd.DataFrame([{"dataset": "rot", "step": s, "filters": 256, "max_relative_weight_error": 1e-14,
                           "correlation_formula": 0.995} for s in (1, 10)])  # fmt: skip
    label = pd.DataFrame([{"dataset": "rot", "kernel_size": 3, "between_class_share": 0.001, "max_ratio": 0.01,
                           "max_ratio_component": 2}])  # fmt: skip
    accuracy = pd.DataFrame([
        {"dataset": "rot", "arch": "linear", "labels": "true", "train_accuracy": 0.9, "test_accuracy": 0.3,
         "chance": 0.25},
        {"dataset": "rot", "arch": "linear", "labels": "random", "train_accuracy": 0.6, "test_accuracy": 0.25,
         "chance": 0.25},
        {"dataset": "rot", "arch": "small_cnn", "labels": "true", "train_accuracy": 0.95, "test_accuracy": 0.8,
         "chance": 0.25},
    ])  # fmt: skip
    return {"summary": summary, "pairs": pairs, "fits": pd.DataFrame(fits), "whitening": whitening, "frozen": frozen,
            "check": check, "label_info": label, "matched": matched, "accuracy": accuracy,
            "regimes": pd.DataFrame(regimes), "nulls": nulls, "controls": controls, "gaussian": gaussian,
            "analysis": ANALYSIS}  # fmt: skip


def current(table: pd.DataFrame) -> pd.DataFrame:
    """The rows under the criteria in force (without the rows kept for the record)."""
    return table[~table.claim.str.contains("for the record", regex=False)]


def record(table: pd.DataFrame) -> pd.DataFrame:
    """The rows under the criterion before CHANGED."""
    return table[table.claim.str.endswith(RECORD)]


def test_every_claim_row_is_filled_from_the_tables():
    t = replication_table(**tables())
    assert list(t.columns) == COLUMNS
    claims = set(t["claim"])
    for fragment in ("seeds", "architectures", "true vs random", "far from the initial", "frozen", "closed form",
                     "fits the trained linear CNN", "tau grows", "nonlinear", "flatter"):  # fmt: skip
        assert any(fragment in c for c in claims), fragment
    seed = t[t.claim.str.contains("seeds")].iloc[0]
    assert seed["value"] == 0.95 and seed["holds"] is True and "0.940" in seed["measured"]
    labels = t[t.claim.str.contains("true vs random")].iloc[0]
    assert labels["holds"] is False and "0.10% of patch variance" in labels["measured"]
    assert "held-out accuracy (true labels) 0.300, training accuracy (random labels) 0.600" in labels["measured"]
    assert t[t.claim.str.contains("frozen")].iloc[0]["holds"] is True
    tau = t[t.claim.str.contains("tau grows")].iloc[0]
    assert tau["holds"] is True and "last > first in 2/2 runs" in tau["measured"] and tau["value"] == 1.0
    lin, lin_record = t[t.claim.str.contains("fits the trained linear CNN")].to_dict("records")
    # judged on the 4 informative snapshots (2 seeds x steps 10 and 100; step 1000 is late): mean 0.965
    assert lin["value"] == pytest.approx(0.965) and lin["holds"] is True and lin["verdict"] == "yes"
    assert "over 4 informative of 6 snapshots" in lin["measured"] and "informative 4, late 2" in lin["measured"]
    assert "null r (untrained random banks) = 0.600" in lin["measured"]
    assert lin_record["claim"].endswith(RECORD)
    assert lin_record["value"] == 0.96 and lin_record["holds"] is True  # median over 3 snapshots x 2 seeds
    nonlinear = t[t.claim.str.contains("nonlinear")].iloc[0]
    assert nonlinear["value"] == pytest.approx(0.93) and nonlinear["holds"] == (0.93 >= HIGH)
    assert "over 3 informative of 3 runs" in nonlinear["measured"]
    # every row says one of the verdict words, and holds is True / False exactly for yes / no
    assert set(t["verdict"]) <= set(VERDICTS)
    assert all(h is {"yes": True, "no": False}.get(w) for h, w in zip(t["holds"], t["verdict"], strict=True))
    assert HIGH == ANALYSIS_HIGH == 0.9


def test_claims_fail_when_the_numbers_say_so():
    t = replication_table(**tables(corr_seed=0.5, frozen_gap=-0.2))
    assert t[t.claim.str.contains("seeds")].iloc[0]["holds"] is False
    assert t[t.claim.str.contains("frozen")].iloc[0]["holds"] is False


def test_missing_experiments_say_not_run():
    empty = tables()
    empty["frozen"] = empty["frozen"].iloc[0:0]
    empty["check"] = empty["check"].iloc[0:0]
    t = replication_table(**empty)
    for fragment in ("frozen", "closed form"):
        row = t[t.claim.str.contains(fragment)].iloc[0]
        assert row["holds"] is None and row["measured"].startswith("not run") and np.isnan(row["value"])
    md = to_markdown(t)
    assert md.count("\n") == len(t) + 2 and "| not run |" in md


def test_frozen_control_at_chance_is_not_informative():
    t = tables()
    t["frozen"] = t["frozen"].assign(chance=0.78)  # trained 0.80: not 0.05 above chance
    row = replication_table(**t).query("claim.str.contains('frozen')").iloc[0]
    assert row["holds"] is None and "not informative" in row["measured"]
    t["frozen"] = t["frozen"].assign(chance=0.25)
    assert replication_table(**t).query("claim.str.contains('frozen')").iloc[0]["holds"] is True


def whitening_summary_row(dataset: str, **kw) -> dict:
    base = {"dataset": dataset, "arch": "linear", "labels": "true", "n_seeds": 2, "data": 0.3, "init": 0.3,
            "trained": 0.6, "fraction_flatter_than_init": 1.0, "components": 27, "rank": 27, "applicable": True,
            "reason": ""}  # fmt: skip
    return {**base, **kw}


def test_whitening_not_applicable_says_why_instead_of_a_verdict():
    why = "the patches span 1 of 3 components (fewer than 2): nothing to judge"
    t = tables()
    grey = whitening_summary_row("grey", n_seeds=0, data=np.nan, init=np.nan, trained=np.nan,
                                 fraction_flatter_than_init=np.nan, components=3, rank=1, applicable=False,
                                 reason=why)  # fmt: skip
    t["whitening"] = pd.DataFrame([grey])
    table = replication_table(**t)
    row = table[table.claim.str.contains("flatter")].iloc[0]
    assert row["measured"] == f"not applicable: dataset grey: {why}"
    assert row["holds"] is None and np.isnan(row["value"]) and "0.000" not in row["measured"]
    assert row["verdict"] == "not applicable"
    line = next(x for x in to_markdown(table).splitlines() if "flatter" in x)
    assert "not applicable: dataset grey" in line and line.endswith("| not applicable |")


def test_whitening_judged_on_the_applicable_datasets_only():
    t = tables()
    t["whitening"] = pd.DataFrame([
        whitening_summary_row("grey", n_seeds=0, data=np.nan, init=np.nan, trained=np.nan,
                              fraction_flatter_than_init=np.nan, rank=1, applicable=False, reason="too small"),
        whitening_summary_row("photos", fraction_flatter_than_init=0.5),
        whitening_summary_row("mono", rank=9, data=0.5, init=0.5, trained=0.7),
    ])  # fmt: skip
    row = replication_table(**t).query("claim.str.contains('flatter')").iloc[0]
    assert row["value"] == 0.75 and row["holds"] is False  # (0.5 * 2 + 1.0 * 2) / 4 runs, grey not counted
    assert row["measured"].startswith("flatness data 0.400, init 0.400, trained 0.650; 75% of runs flatter")
    assert "(over the data's span: dataset mono rank 9 of 27 components)" in row["measured"]
    assert row["measured"].endswith("; not applicable on dataset grey: too small")
    full = replication_table(**tables()).query("claim.str.contains('flatter')").iloc[0]
    assert full["measured"] == "flatness data 0.300, init 0.300, trained 0.600; 100% of runs flatter than init"


def test_tau_that_falls_back_fails_the_claim():
    t = tables()
    fits = t["fits"]
    lin = (fits.model == "linear") & (fits.step == 1000)
    t["fits"] = fits.assign(tau=np.where(lin, 0.5, fits["tau"]))  # last snapshot below the first
    row = replication_table(**t).query("claim.str.contains('tau grows')").iloc[0]
    assert row["holds"] is False and "last > first in 0/2" in row["measured"]


def test_matched_tau_rows_sit_beside_their_final_step_rows():
    t = replication_table(**tables())
    conditions = ["architecture vs architecture, arch (mixed)",
                  "architecture vs architecture, arch (mixed), at matched tau"]  # fmt: skip
    arch = current(t)[current(t).condition.str.startswith("architecture vs architecture")]
    assert list(arch.condition) == conditions
    assert list(arch.holds) == [False, True]  # final 0.85 [0.80, 0.88], matched 0.93
    assert "3 of 4 pairs matched" in arch.iloc[1]["measured"] and "over 3 informative of 3 pairs" in arch.iloc[1][
        "measured"]  # fmt: skip
    labels = current(t)[current(t).claim.str.contains("true vs random")]
    assert list(labels.holds) == [False, True] and labels.iloc[1]["value"] == pytest.approx(0.92)
    dataset = t[t.claim.str.contains("datasets")]
    assert len(dataset) == 2 and dataset.holds.isna().all()  # no dataset pair: both not run
    assert (dataset.verdict == "not run").all()
    # the same rows under the criterion before CHANGED, at the end of the table, in the same order
    old = record(t)[record(t).condition.str.startswith("architecture vs architecture")]
    assert list(old.condition) == conditions and list(old.holds) == [False, True]
    assert old.iloc[1]["measured"] == "r = 0.930 (3 matched pairs)"


def tau_rows(t: dict) -> pd.DataFrame:
    return replication_table(**t).query("claim.str.contains('tau grows')")


def test_tau_growth_is_judged_off_the_grid_bound_and_the_earlier_criteria_are_shown():
    t = tables()
    fits = t["fits"]
    # a first snapshot at the grid's upper end: tau there says nothing, and it falls back afterwards
    early = pd.DataFrame([{**fits.iloc[0].to_dict(), "step": 1, "tau": 50.0, "at_bound": True, "seed": s,
                           "formula": "one_parameter"} for s in (0, 1)])  # fmt: skip
    t["fits"] = pd.concat([fits, early], ignore_index=True)
    current, original, first = tau_rows(t).to_dict("records")
    assert current["claim"] == "effective time tau grows with training" and current["holds"] is True
    assert "6 of 8 snapshots off the bound" in current["measured"] and "last > first in 2/2" in current["measured"]
    assert "original criterion, for the record" in original["claim"] and original["holds"] is False
    assert "tau non-decreasing in 0/2 runs" in original["measured"]
    assert "first changed criterion, for the record" in first["claim"] and first["holds"] is False
    assert "last > first in 0/2" in first["measured"]


def test_runs_with_too_few_snapshots_off_the_bound_are_not_judged():
    t = tables()
    fits = t["fits"]
    t["fits"] = fits.assign(at_bound=(fits.model == "linear") & (fits.step == 10))  # 2 free snapshots per run
    current = tau_rows(t).iloc[0]
    assert current["holds"] is None and current["measured"].startswith("not run") and "(4 of 6)" in current["measured"]
    t["fits"] = fits.assign(at_bound=(fits.model == "linear") & (fits.step == 10) & (fits.seed == 0))
    current = tau_rows(t).iloc[0]
    assert current["holds"] is True and "1 runs with fewer than 3 such snapshots not judged" in current["measured"]


def test_a_dataset_counts_when_its_labels_are_learned_and_carry_no_mean_information():
    t = tables()
    row = replication_table(**t).query("claim.str.contains('labels are learned')").iloc[0]
    assert row["holds"] is True and row["value"] == pytest.approx(0.8 - 0.25)
    assert (
        "0.100% (k = 3)" in row["measured"]
        and "small_cnn 0.800" in row["measured"]
        and "chance 0.250" in row["measured"]
    )
    below = t["accuracy"].assign(test_accuracy=lambda d: d.chance + LEARNED_MARGIN - 0.01)  # labels not learned
    assert (
        replication_table(**{**t, "accuracy": below}).query("claim.str.contains('labels are learned')").iloc[0]["holds"]
        is False
    )
    mean_coloured = t["label_info"].assign(between_class_share=0.3)  # the labels are told by the mean colour
    rows = replication_table(**{**t, "label_info": mean_coloured}).query("claim.str.contains('labels are learned')")
    assert rows.iloc[0]["holds"] is False
    unknown = replication_table(**{**t, "accuracy": t["accuracy"].drop(columns="chance")})
    assert unknown.query("claim.str.contains('labels are learned')").iloc[0]["holds"] is None
    none = replication_table(**{**t, "accuracy": t["accuracy"].iloc[0:0]}).query("claim.str.contains('labels are')")
    assert none.iloc[0]["measured"] == "not run: no true-label run"


# ------------------------------------------------------------------------ when a comparison can say no


def stats(n: int, lo: float = 0.95, hi: float = 0.98) -> dict:
    return {"n": n, "mean": (lo + hi) / 2, "ci_low": lo, "ci_high": hi}


SEPARATED = {"n": 4, "mean": 0.7}


@pytest.mark.parametrize(
    ("given", "n_all", "control", "word", "why"),
    [
        (stats(0), 0, SEPARATED, "not run", "no pair"),
        (stats(0), 6, SEPARATED, "not informative", "none of 6 pairs informative"),
        ({"n": 0}, 6, None, "not informative", "none of 6 pairs informative"),
        (stats(MIN_PAIRS - 1), 6, SEPARATED, "undecided", f"fewer than {MIN_PAIRS}"),
        (stats(1), 6, SEPARATED, "undecided", "1 informative pair, fewer"),
        (stats(MIN_PAIRS, 0.5, 0.89), 6, SEPARATED, "no", ""),
        (stats(MIN_PAIRS, 0.5, 0.89), 6, {"n": 0, "mean": np.nan}, "no", ""),  # a no needs no control
        (stats(MIN_PAIRS, 0.85, 0.95), 6, SEPARATED, "undecided", "interval straddles 0.9"),
        (stats(MIN_PAIRS), 6, {"n": 0, "mean": np.nan}, "undecided", "no negative control"),
        (stats(MIN_PAIRS), 6, {"n": 4, "mean": 0.95}, "undecided", "negative control not called different"),
        (stats(MIN_PAIRS), 6, {"n": 4, "mean": HIGH}, "undecided", "negative control not called different"),
        (stats(MIN_PAIRS), 6, SEPARATED, "yes", ""),
        (stats(MIN_PAIRS), 6, None, "yes", ""),  # rows without a control (the formula's fits)
        (stats(MIN_PAIRS, 0.96, 0.99), 6, None, "yes", ""),
    ],
)
def test_judge_each_branch(given, n_all, control, word, why):
    got, reason = judge(given, n_all, control)
    assert got == word and why in reason
    assert (reason == "") == (word in ("yes", "no"))


def test_judge_threshold_is_a_parameter():
    assert judge(stats(MIN_PAIRS, 0.96, 0.97), 3, None, threshold=0.95)[0] == "yes"
    assert judge(stats(MIN_PAIRS, 0.93, 0.94), 3, None, threshold=0.95)[0] == "no"
    assert judge(stats(MIN_PAIRS, 0.93, 0.94), 3, None)[0] == "yes"


def test_verdict_words():
    assert [verdict(w) for w in VERDICTS] == list(VERDICTS)
    assert (verdict(True), verdict(False), verdict(None), verdict(np.nan), verdict(pd.NA)) == (
        "yes", "no", "not run", "not run", "not run")  # fmt: skip
    with pytest.raises(ValueError, match="unknown verdict"):
        verdict("maybe")


#: A 3x3x3 spectrum shaped like the embedded datasets' (as in test_regime.py).
LAM = np.array([20.0] + [1.3] * 4 + [0.27] * 3 + [0.08] * 7 + [0.012] * 6 + [0.004] * 6)


def formula_runs(taus: dict[int, tuple[float, ...]], steps=(100, 200, 300)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Energy and fits of linear-CNN runs (seed -> tau per step) whose W - W0 profiles are the formula's at those
    tau, each seed at its own scale; 16 filters."""
    energy, fits = [], []
    for seed, tau_per_step in taus.items():
        keys = {**run("linear", "true", seed), "kernel_size": 3}
        for step, tau in zip(steps, tau_per_step, strict=True):
            profile = (1 + seed) * formula_profile(LAM, tau)
            energy.append(pd.DataFrame({**keys, "kind": "W-W0", "step": step, "component": np.arange(1, 28),
                                        "eigenvalue": LAM, "energy": profile, "filters": 16}))  # fmt: skip
            fits.append({**keys, "kind": "W-W0", "step": step, "formula": "one_parameter", "tau": tau,
                         "at_bound": False, "correlation": 1.0})  # fmt: skip
    return pd.concat(energy, ignore_index=True), pd.DataFrame(fits)


def pipeline(energy: pd.DataFrame, fits: pd.DataFrame) -> dict:
    """The consistency inputs of replication_table as the workflow makes them from energy and fits."""
    from firstlayer.analysis import snapshot_profiles
    from firstlayer.regime import control_frame, spectra

    snapshots, eigenvalues = snapshot_profiles(energy, fits), spectra(energy)
    regimes = regime_frame(snapshots, eigenvalues)
    pairs = annotate_pairs(pairwise_consistency(final_profiles(energy)), regimes, eigenvalues, draws=200)
    summary = consistency_summary(pairs, n_boot=200)
    return {"summary": summary, "pairs": pairs, "controls": control_frame(regimes, snapshots), "regimes": regimes}


def test_early_regime_pairs_are_not_informative_and_never_yes_but_the_record_row_says_yes():
    # four seeds, every snapshot early in training (tau <= 0.02 on a lambda_max = 20 spectrum): the profiles
    # follow sqrt(lambda), whatever was learned, and correlate at 0.99
    energy, fits = formula_runs({s: (0.001 * (1 + s), 0.003 * (1 + s), 0.005 * (1 + s)) for s in range(4)})
    t = tables()
    made = pipeline(energy, fits)
    assert (made["regimes"]["regime"] == "early").all()
    pairs = made["pairs"]
    assert len(pairs) == 6 and (pairs.correlation > 0.99).all() and not pairs["informative"].any()
    t |= {"summary": made["summary"], "pairs": pairs, "controls": made["controls"],
          "matched": t["matched"].iloc[0:0]}  # fmt: skip
    table = replication_table(**t)
    row = current(table)[current(table).condition == "seed vs seed, arch linear"].iloc[0]
    assert row["verdict"] == "not informative" and row["holds"] is None and np.isnan(row["value"])
    assert "no informative pair of 6" in row["measured"] and "all pairs r = 0.99" in row["measured"]
    old = record(table)[record(table).condition == "seed vs seed, arch linear"].iloc[0]
    assert old["holds"] is True and old["verdict"] == "yes" and old["value"] > 0.99
    assert old["claim"] == f"{row['claim']} {RECORD}" and old["measured"].startswith("r = 0.99")
    # no row of the seed claim says yes under the criteria in force
    assert "yes" not in set(current(table)[current(table).claim.str.contains("across seeds")].verdict)


def test_informative_formula_runs_at_the_same_tau_agree_and_have_a_control():
    # four seeds at one tau schedule inside the informative window, each with snapshots 3x apart in tau
    energy, fits = formula_runs({s: (1.0, 3.0, 9.0) for s in range(4)})
    made = pipeline(energy, fits)
    assert (made["regimes"]["regime"] == "informative").all() and made["pairs"]["informative"].all()
    assert (made["controls"]["separated"]).all() and (made["controls"]["tau_ratio"] == 3.0).all()
    t = tables() | {k: made[k] for k in ("summary", "pairs", "controls")} | {"matched": tables()["matched"].iloc[0:0]}
    row = current(replication_table(**t)).query("condition == 'seed vs seed, arch linear'").iloc[0]
    assert row["verdict"] == "yes" and row["value"] == pytest.approx(1.0) and "called different" in row["measured"]


def test_the_record_rows_close_the_table_in_the_order_of_their_rows():
    t = replication_table(**tables())
    kept = t.claim.str.endswith(RECORD).to_numpy()
    assert kept.any() and kept[-kept.sum() :].all()  # all of them, and only them, at the end
    ordered = [c.removesuffix(f" {RECORD}") for c in t.claim[kept]]
    assert set(ordered) <= set(t.claim[~kept])
    # each agreement row that ran has its record row under the same condition, in the same order
    judged = current(t)[current(t).criterion.str.startswith("informative pairs") & (current(t).condition != "(none)")]
    agreement = record(t)[record(t).criterion.str.startswith("mean correlation")]
    assert list(judged.condition) == list(agreement.condition) and len(judged) == 6


def test_undecided_without_a_separated_negative_control():
    t = tables()
    seed_row = "seed vs seed, arch linear"

    def seed(table: pd.DataFrame) -> pd.Series:
        return current(table)[current(table).condition == seed_row].iloc[0]

    close = t["controls"].assign(correlation=0.95, separated=False)  # the statistic cannot tell tau from 2.5 tau
    row = seed(replication_table(**{**t, "controls": close}))
    assert row["verdict"] == "undecided" and "negative control not called different" in row["measured"]
    assert "r = 0.950 over 6 runs: called the same" in row["measured"]  # linear, true and random, 3 seeds
    none = t["controls"].iloc[0:0]
    row = seed(replication_table(**{**t, "controls": none}))
    assert row["verdict"] == "undecided" and "no negative control in these runs" in row["measured"]
    assert "negative control: none" in row["measured"]
    # a 'no' does not need the control
    t = tables(corr_seed=0.5)
    row = seed(replication_table(**{**t, "controls": none}))
    assert row["verdict"] == "no"


def test_an_interval_straddling_high_or_too_few_informative_pairs_is_undecided():
    t = tables()
    s = t["summary"]
    seed = (s.kind == "W-W0") & (s.relation == "seed")
    straddle = s.copy()
    straddle.loc[seed, ["informative_ci_low", "informative_ci_high"]] = [0.85, 0.97]
    row = current(replication_table(**{**t, "summary": straddle})).query("condition == 'seed vs seed, arch linear'")
    assert row.iloc[0]["verdict"] == "undecided" and "interval straddles 0.9" in row.iloc[0]["measured"]
    few = s.copy()
    few.loc[seed, "informative_n"] = 2
    row = current(replication_table(**{**t, "summary": few})).query("condition == 'seed vs seed, arch linear'")
    assert row.iloc[0]["verdict"] == "undecided" and "fewer than 3" in row.iloc[0]["measured"]
    # the record row still reads the mean over all pairs
    old = record(replication_table(**{**t, "summary": few})).query("condition == 'seed vs seed, arch linear'")
    assert old.iloc[0]["holds"] is True


def test_label_rows_are_judged_on_informative_pairs_only():
    t = tables(labels_corr=0.95)
    row = current(replication_table(**t)).query("claim.str.contains('true vs random')").iloc[0]
    assert row["verdict"] == "yes" and row["value"] == pytest.approx(0.95)
    early = t["pairs"].assign(informative=np.where(t["pairs"].relation == "labels", False, True))
    table = replication_table(**{**t, "pairs": early})
    row = current(table).query("claim.str.contains('true vs random')").iloc[0]
    assert row["verdict"] == "not informative" and "label information: 0.10%" in row["measured"]
    assert "Gaussian k = 3: I1 = " in row["measured"]
    assert record(table).query("claim.str.contains('true vs random')").iloc[0]["holds"] is True


def test_the_record_row_at_matched_tau_keeps_the_old_factor_2():
    t = tables()
    lab = t["matched"].relation == "labels"
    # tau 1.6x apart: beyond the tolerance in force (sqrt(2)), within the old one (2)
    t["matched"] = t["matched"].assign(log_tau_distance=np.where(lab, np.log(1.6), t["matched"].log_tau_distance),
                                       matched=np.where(lab, False, t["matched"].matched))  # fmt: skip
    table = replication_table(**t)
    condition = "dataset rot, arch linear, at matched tau"
    row = current(table)[current(table).condition == condition].iloc[0]
    assert row["verdict"] == "not run" and "0 of 3 pairs" in row["measured"]
    old = record(table)[record(table).condition == condition].iloc[0]
    assert old["holds"] is True and old["measured"] == "r = 0.920 (3 matched pairs)"
    assert "within a factor 2" in old["criterion"] and "sqrt(2)" in row["criterion"]


def test_init_scale_pairs_have_their_own_rows():
    t = tables()
    lin, small = run("linear", "true", 0), run("linear_small_init", "true", 0)
    scale_pairs = [pair("init scale", {**lin, "seed": s}, {**small, "seed": s}, 0.97) for s in SEEDS]
    t["pairs"] = pd.concat([t["pairs"], pd.DataFrame(scale_pairs)], ignore_index=True)
    t["summary"] = pd.concat(
        [
            t["summary"],
            pd.DataFrame([summary_row("W-W0", "init scale", "(mixed)", 3, 0.97, 0.96, 0.98, (3, 0.97, 0.96, 0.98))]),
        ],
        ignore_index=True,
    )
    t["controls"] = pd.concat([t["controls"], t["controls"].assign(arch="linear_small_init")], ignore_index=True)
    table = replication_table(**t)
    rows = current(table)[current(table).claim == "W - W0 profiles agree across init scales (one network)"]
    assert list(rows.condition) == ["init scale vs init scale, arch (mixed)",
                                    "init scale vs init scale, arch (mixed), at matched tau"]  # fmt: skip
    assert list(rows.verdict) == ["yes", "not run"]
    without = replication_table(**tables())
    rows = without[without.claim.str.contains("init scales")]
    assert len(rows) == 2 and (rows.verdict == "not run").all()
    assert "no pair differing only in init scale" in rows.iloc[0]["measured"]


def test_the_second_order_row_reads_the_gaussian_label_information():
    t = tables()
    name = "the dataset's labels carry no class-covariance information (second order)"
    row = replication_table(**t).pipe(lambda d: d[d.claim == name]).iloc[0]
    assert row["holds"] is True and row["value"] == 0.5 and "z = 0" in row["measured"]
    assert "I2 = 0.002 (null 0.0019, z = 0)" in row["measured"]
    far = t["gaussian"].assign(second_order_z=12.0)
    row = replication_table(**{**t, "gaussian": far}).pipe(lambda d: d[d.claim == name]).iloc[0]
    assert row["holds"] is False and row["verdict"] == "no" and row["value"] == 12.0
    row = replication_table(**{**t, "gaussian": t["gaussian"].iloc[0:0]}).pipe(lambda d: d[d.claim == name]).iloc[0]
    assert row["verdict"] == "not run" and "no Gaussian label information of dataset rot" in row["measured"]
    # the first-order row beside it says the Gaussian numbers too
    first = replication_table(**t).query("claim.str.contains('labels are learned')").iloc[0]
    assert "Gaussian label information k = 3" in first["measured"]


def test_fit_rows_are_judged_on_informative_profiles():
    t = tables()
    late = t["regimes"].assign(regime="late")
    table = replication_table(**{**t, "regimes": late})
    lin = current(table).query("claim.str.contains('fits the trained linear CNN')").iloc[0]
    assert lin["verdict"] == "not informative" and "no informative profile of 6 snapshots" in lin["measured"]
    nonlinear = current(table).query("claim.str.contains('nonlinear')").iloc[0]
    assert nonlinear["verdict"] == "not informative" and np.isnan(nonlinear["value"])
    # the record rows keep the median over every snapshot
    assert record(table).query("claim.str.contains('fits the trained linear CNN')").iloc[0]["holds"] is True
    # two runs are too few for a verdict
    two = t["fits"][t["fits"].seed < 2]
    nonlinear = current(replication_table(**{**t, "fits": two})).query("claim.str.contains('nonlinear')").iloc[0]
    assert nonlinear["verdict"] == "undecided" and "fewer than 3" in nonlinear["measured"]
    assert "2 informative run" in nonlinear["measured"]
    # a fit below the threshold across the seeds' interval says no
    low = t["fits"].assign(correlation=np.where(t["fits"].model == "small_cnn", 0.8, t["fits"].correlation))
    nonlinear = current(replication_table(**{**t, "fits": low})).query("claim.str.contains('nonlinear')").iloc[0]
    assert nonlinear["verdict"] == "no" and nonlinear["holds"] is False


def test_markdown_writes_the_verdict_words():
    t = tables()
    t["pairs"] = t["pairs"].assign(informative=False)
    t["summary"] = t["summary"].assign(informative_n=0)
    table = replication_table(**t)
    md = to_markdown(table)
    assert "| not informative |" in md and "| yes |" in md and "| no |" in md
    assert md.count("\n") == len(table) + 2
