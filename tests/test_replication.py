"""The replication table: every claim row comes from the tables given, and says 'not run' when its experiment is
missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firstlayer.replication import COLUMNS, HIGH, LEARNED_MARGIN, replication_table, to_markdown


def tables(corr_seed: float = 0.95, frozen_gap: float = -0.02, labels_corr: float = 0.8) -> dict:
    summary = pd.DataFrame([
        {"kind": "W-W0", "relation": "seed", "arch": "linear", "n": 2, "mean": corr_seed, "ci_low": corr_seed - 0.01,
         "ci_high": corr_seed + 0.01},
        {"kind": "W-W0", "relation": "architecture", "arch": "(mixed)", "n": 4, "mean": 0.85, "ci_low": 0.8,
         "ci_high": 0.9},
        {"kind": "W", "relation": "trained vs init", "arch": "linear", "n": 4, "mean": 0.3, "ci_low": 0.2,
         "ci_high": 0.4},
        {"kind": "W", "relation": "seed", "arch": "linear", "n": 2, "mean": 0.9, "ci_low": 0.85, "ci_high": 0.95},
    ])  # fmt: skip
    pairs = pd.DataFrame([{"kind": "W-W0", "relation": "labels", "dataset_a": "rot", "arch_a": "linear",
                           "correlation": labels_corr}])  # fmt: skip
    fits = []
    for formula, bump in (("one_parameter", 0.0), ("init_aware", 0.01)):
        for seed in (0, 1):
            for step, tau, corr in ((10, 1.0, 0.97), (100, 5.0, 0.96), (1000, 20.0, 0.9)):
                fits.append({"formula": formula, "kind": "W-W0", "model": "linear", "arch": "linear",
                             "dataset": "rot", "labels": "true", "seed": seed, "step": step, "tau": tau,
                             "correlation": corr + bump, "at_bound": False})  # fmt: skip
            fits.append({"formula": formula, "kind": "W-W0", "model": "small_cnn", "arch": "small_cnn",
                         "dataset": "rot", "labels": "true", "seed": seed, "step": 300, "tau": 3.0,
                         "correlation": 0.93 + bump, "at_bound": False})  # fmt: skip
    whitening = pd.DataFrame([{"dataset": "rot", "arch": "linear", "labels": "true", "n_seeds": 2, "data": 0.3,
                               "init": 0.3, "trained": 0.6, "fraction_flatter_than_init": 1.0}])  # fmt: skip
    frozen = pd.DataFrame([{"dataset": "rot", "arch": "small_cnn", "test_accuracy_trained": 0.8,
                            "test_accuracy_frozen": 0.8 + frozen_gap, "difference": frozen_gap}])  # fmt: skip
    check = pd.DataFrame([{"dataset": "rot", "step": s, "filters": 256, "max_relative_weight_error": 1e-14,
                           "correlation_formula": 0.995} for s in (1, 10)])  # fmt: skip
    label = pd.DataFrame([{"dataset": "rot", "kernel_size": 3, "between_class_share": 0.001, "max_ratio": 0.01,
                           "max_ratio_component": 2}])  # fmt: skip
    matched_summary = pd.DataFrame([
        {"kind": "W-W0", "relation": "seed", "arch": "linear", "n_pairs": 2, "n": 2, "mean": 0.97, "ci_low": 0.96,
         "ci_high": 0.98, "median_log_tau_distance": 0.1},
        {"kind": "W-W0", "relation": "architecture", "arch": "(mixed)", "n_pairs": 4, "n": 3, "mean": 0.93,
         "ci_low": 0.9, "ci_high": 0.95, "median_log_tau_distance": 0.2},
    ])  # fmt: skip
    matched = pd.DataFrame([{"kind": "W-W0", "relation": "labels", "dataset_a": "rot", "arch_a": "linear",
                             "correlation": 0.92, "correlation_final": labels_corr, "log_tau_distance": 0.3,
                             "matched": True}])  # fmt: skip
    accuracy = pd.DataFrame([
        {"dataset": "rot", "arch": "linear", "labels": "true", "train_accuracy": 0.9, "test_accuracy": 0.3,
         "chance": 0.25},
        {"dataset": "rot", "arch": "linear", "labels": "random", "train_accuracy": 0.6, "test_accuracy": 0.25,
         "chance": 0.25},
        {"dataset": "rot", "arch": "small_cnn", "labels": "true", "train_accuracy": 0.95, "test_accuracy": 0.8,
         "chance": 0.25},
    ])  # fmt: skip
    return {"summary": summary, "pairs": pairs, "fits": pd.DataFrame(fits), "whitening": whitening, "frozen": frozen,
            "check": check, "label_info": label, "matched_summary": matched_summary, "matched": matched,
            "accuracy": accuracy}  # fmt: skip


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
    lin = t[t.claim.str.contains("fits the trained linear CNN")].iloc[0]
    assert lin["value"] == 0.96 and lin["holds"] is True  # median over 3 snapshots x 2 seeds
    nonlinear = t[t.claim.str.contains("nonlinear")].iloc[0]
    assert nonlinear["value"] == 0.93 and nonlinear["holds"] == (0.93 >= HIGH)


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
    line = next(x for x in to_markdown(table).splitlines() if "flatter" in x)
    assert "not applicable: dataset grey" in line and line.endswith("| not run |")


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
    arch = t[t.condition.str.startswith("architecture vs architecture")]
    assert list(arch.condition) == ["architecture vs architecture, arch (mixed)",
                                    "architecture vs architecture, arch (mixed), at matched tau"]  # fmt: skip
    assert list(arch.holds) == [False, True]  # final 0.85, matched 0.93
    assert (
        "3 of 4 pairs matched" in arch.iloc[1]["measured"] and "final step r = 0.850 (no)" in arch.iloc[1]["measured"]
    )
    labels = t[t.claim.str.contains("true vs random")]
    assert list(labels.holds) == [False, True] and labels.iloc[1]["value"] == 0.92
    dataset = t[t.claim.str.contains("datasets")]
    assert len(dataset) == 2 and dataset.holds.isna().all()  # no dataset pair: both not run


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
