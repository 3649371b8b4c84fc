"""Consistency at matched effective time (docs/method.md, Matched effective time): pairs of runs compared at the
snapshots whose fitted tau are closest, never at snapshots whose fit is at the tau grid's bound."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from firstlayer.analysis import (
    MATCHED_TAU_TOLERANCE,
    consistency_summary,
    final_profiles,
    matched_tau,
    matched_tau_summary,
    pairwise_consistency,
    snapshot_profiles,
    tau_distance,
)
from firstlayer.io import Stamp, write_table
from firstlayer.regime import annotate_pairs, control_frame, informative_window, regime_frame, spectra
from firstlayer.replication import HIGH, consistency_rows
from firstlayer.theory import formula_profile, pearson

#: Step 24 gives every run a negative control (two informative snapshots 2-3x apart in tau: docs/method.md, When a
#: comparison can say no); the rates are powers of two, so every tau, and every ratio of two, is exact.
STEPS = (8, 16, 24, 32, 64, 128, 256)
LAST = STEPS[-1]
EIGENVALUES = np.geomspace(1.0, 1e-3, 27)
#: tau per step: the "fast" architecture reaches 8x the slow one's tau at every step, so at the last step its
#: profile has another shape, while its profile at step s equals the slow one's at step 8 s (exactly the formula).
#: The slow runs' first snapshot (tau 1) is in the early regime; every other snapshot is informative.
RATE = {"slow": 0.125, "fast": 1.0}
ANALYSIS = {"bootstrap": 200, "confidence": 0.95, "null_draws": 200}
REPO = Path(__file__).resolve().parents[1]
RUNS = [("d", arch, labels, seed) for arch in RATE for labels in ("true", "random") for seed in (0, 1)]


def synthetic(at_bound=lambda arch, step: False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Energy (W - W0 profiles of the formula at tau = rate * step, each run at its own scale) and its fits."""
    energy, fits = [], []
    for dataset, arch, labels, seed in RUNS:
        keys = {"dataset": dataset, "arch": arch, "labels": labels, "seed": seed, "kernel_size": 3}
        for step in STEPS:
            tau = RATE[arch] * step
            profile = (1 + seed + len(labels)) * formula_profile(EIGENVALUES, tau)
            energy.append(pd.DataFrame({**keys, "kind": "W-W0", "step": step, "component": np.arange(1, 28),
                                        "eigenvalue": EIGENVALUES, "energy": profile, "filters": 16}))  # fmt: skip
            fits.append({**keys, "kind": "W-W0", "step": step, "formula": "one_parameter", "tau": tau,
                         "at_bound": at_bound(arch, step), "correlation": 1.0})  # fmt: skip
    return pd.concat(energy, ignore_index=True), pd.DataFrame(fits)


def analyse(energy: pd.DataFrame, fits: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    pairs = pairwise_consistency(final_profiles(energy))
    matched = matched_tau(pairs, tau_distance(pairs, snapshot_profiles(energy, fits)))
    return pairs, matched, matched_tau_summary(matched, n_boot=200)


def table_rows(energy: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """The replication table's consistency rows (then the record rows) of a synthetic run, through the workflow's
    steps: regimes and negative controls, pairs and matched pairs annotated with their regimes and null."""
    snapshots, eigenvalues = snapshot_profiles(energy, fits), spectra(energy)
    regimes = regime_frame(snapshots, eigenvalues)
    pairs = annotate_pairs(pairwise_consistency(final_profiles(energy)), regimes, eigenvalues, draws=200)
    matched = matched_tau(pairs, tau_distance(pairs, snapshots))
    matched = annotate_pairs(matched, regimes, eigenvalues, step_columns=("step_a", "step_b"), draws=200)
    summary = consistency_summary(pairs, n_boot=200)
    label_info = pd.DataFrame({"dataset": ["d"], "between_class_share": [0.001]})
    accuracy = pd.DataFrame(columns=["dataset", "arch", "labels", "train_accuracy", "test_accuracy"])
    rows, record = consistency_rows(summary, pairs, matched, control_frame(regimes, snapshots), label_info,
                                    pd.DataFrame(), accuracy, ANALYSIS)  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(record)


@pytest.fixture(scope="module")
def synthetic_run():
    return analyse(*synthetic())


def test_profiles_equal_at_equal_tau_are_consistent_at_matched_tau_not_at_the_last_step(synthetic_run):
    _, matched, summary = synthetic_run
    arch = matched[matched.relation == "architecture"]
    assert len(arch) == 4 and arch["matched"].all()
    assert (arch["correlation_final"] < 0.5).all()  # tau 32 against 256
    assert np.allclose(arch["correlation"], 1.0) and np.allclose(arch["log_tau_distance"], 0.0)
    assert (arch["tau_a"] == arch["tau_b"]).all() and (arch["step_a"] != arch["step_b"]).all()
    row = summary[(summary.relation == "architecture")].iloc[0]
    assert row["arch"] == "(mixed)" and row["n"] == row["n_pairs"] == 4 and row["mean"] == pytest.approx(1.0)

    rows, record = table_rows(*synthetic())
    final, at_tau = rows[rows.condition.str.startswith("architecture vs architecture")].to_dict("records")
    assert final["holds"] is False and final["verdict"] == "no" and final["value"] < HIGH
    assert "over 4 informative of 4 pairs" in final["measured"] and "called different" in final["measured"]
    assert at_tau["holds"] is True and at_tau["verdict"] == "yes" and at_tau["condition"].endswith("at matched tau")
    assert at_tau["value"] == pytest.approx(1.0) and "4 of 4 pairs matched" in at_tau["measured"]
    # the criterion before 2026-12-03 says the same here, in its own rows at the end
    old = record[record.condition.str.startswith("architecture vs architecture")]
    assert list(old.holds) == [False, True] and old.claim.str.contains("for the record").all()
    # every final-step consistency row has its matched-tau row right after it
    consistency = rows[~rows.claim.str.contains("initial")]
    final, at_tau = consistency.iloc[0::2], consistency.iloc[1::2]
    # seed x 2 archs, architecture, init scale (not run), dataset (not run), labels x 2 archs
    assert len(final) == len(at_tau) == 7
    ran = final.condition != "(none)"  # dataset vs dataset: one dataset, both rows not run
    assert list(at_tau.condition[ran.to_numpy()]) == list(final.condition[ran] + ", at matched tau")
    assert (at_tau.criterion.str.contains("at matched tau")).all()


def test_equal_tau_at_every_step_matches_the_latest_snapshots(synthetic_run):
    _, matched, _ = synthetic_run
    seeds = matched[matched.relation == "seed"]
    assert len(seeds) == 4 and (seeds.step_a == LAST).all() and (seeds.step_b == LAST).all()
    assert np.allclose(seeds["correlation"], seeds["correlation_final"])


def test_snapshots_at_the_tau_bound_are_never_matched():
    # the fast runs' fits are at the bound at every step but the last: their tau 8 ... 128 would match the slow
    # runs' exactly, so without the exclusion every architecture pair would be matched at distance 0
    _, matched, _ = analyse(*synthetic(lambda arch, step: arch == "fast" and step < LAST))
    arch = matched[matched.relation == "architecture"]
    fast_step = np.where(arch.arch_a == "fast", arch.step_a, arch.step_b)
    assert (fast_step == LAST).all()
    assert np.allclose(arch["log_tau_distance"], np.log(8.0))  # slow tau 32 at its last step, fast 256
    assert not arch["matched"].any()
    seeds = matched[(matched.relation == "seed") & (matched.arch_a == "fast")]
    assert (seeds.step_a == LAST).all() and seeds["matched"].all()


def test_a_run_with_every_fit_at_the_bound_is_unmatched_and_its_row_not_run():
    _, matched, summary = analyse(*synthetic(lambda arch, step: arch == "fast"))
    arch = matched[matched.relation == "architecture"]
    assert not arch["matched"].any() and arch["step_a"].isna().all() and arch["correlation"].isna().all()
    row = summary[summary.relation == "architecture"].iloc[0]
    assert row["n"] == 0 and row["n_pairs"] == 4 and np.isnan(row["mean"])
    rows, record = table_rows(*synthetic(lambda arch, step: arch == "fast"))
    at_tau = rows[rows.condition == "architecture vs architecture, arch (mixed), at matched tau"].iloc[0]
    assert at_tau["holds"] is None and at_tau["measured"].startswith("not run") and "0 of 4" in at_tau["measured"]
    assert at_tau["verdict"] == "not run"
    old = record[record.condition == "architecture vs architecture, arch (mixed), at matched tau"].iloc[0]
    assert old["holds"] is None and old["measured"] == "not run: no matched pairs"


def test_tau_distance_correlates_every_pair_of_free_snapshots(synthetic_run):
    energy, fits = synthetic(lambda arch, step: step == STEPS[0])
    pairs = pairwise_consistency(final_profiles(energy))
    d = tau_distance(pairs, snapshot_profiles(energy, fits))
    assert len(d) == len(pairs[pairs.kind == "W-W0"]) * (len(STEPS) - 1) ** 2 and (d.step_a > STEPS[0]).all()
    same = d[d.tau_a == d.tau_b]
    assert np.allclose(same["correlation"], 1.0) and (d["correlation"] <= 1 + 1e-12).all()


def test_the_rule_script_writes_the_three_tables(tmp_path: Path) -> None:
    """workflow/scripts/matched_tau.py with a stand-in ``snakemake``: tables with provenance, one summary row per
    relation and architecture, every matched pair with its two snapshots' regimes."""
    energy, fits = synthetic()
    eigenvalues = spectra(energy)
    regimes = regime_frame(snapshot_profiles(energy, fits), eigenvalues)
    pairs = annotate_pairs(pairwise_consistency(final_profiles(energy)), regimes, eigenvalues, draws=200)
    inputs = ("energy", "fits", "pairs", "regimes")
    for name, table in zip(inputs, (energy, fits, pairs, regimes), strict=True):
        write_table(table, tmp_path / f"{name}.parquet", Stamp("abc", "c0de", name))
    out = {name: str(tmp_path / f"out_{name}.parquet") for name in ("matched", "summary", "distances")}
    snakemake = SimpleNamespace(
        input=SimpleNamespace(**{name: str(tmp_path / f"{name}.parquet") for name in inputs}),
        output=SimpleNamespace(**out),
        log=[str(tmp_path / "matched_tau.log")],
        params=SimpleNamespace(analysis={"bootstrap": 50, "confidence": 0.9, "null_draws": 200}, code="c0de"),
        rule="matched_tau",
    )
    runpy.run_path(str(REPO / "workflow" / "scripts" / "matched_tau.py"), init_globals={"snakemake": snakemake})
    matched, summary = pd.read_parquet(out["matched"]), pd.read_parquet(out["summary"])
    assert len(matched) == len(pairs[pairs.kind == "W-W0"]) and matched["config_hash"].nunique() == 1
    assert set(matched["made_by"]) == {"matched_tau"} and set(summary["code_hash"]) == set(matched["code_hash"])
    assert set(summary.relation) == set(matched.relation) and (summary["n_boot"] == 50).all()
    assert len(pd.read_parquet(out["distances"])) == len(matched) * len(STEPS) ** 2
    assert {"regime_a", "regime_b", "informative", "null_r"} <= set(matched.columns)
    # the matched snapshots are the slow runs' last and the fast runs' at equal tau: all informative
    assert matched["informative"].all() and matched["null_r"].between(0, 1).all()


@pytest.mark.parametrize("lam", [EIGENVALUES, np.array([20.0] + [1.3] * 4 + [0.27] * 3 + [0.08] * 7 + [0.012] * 12)])
def test_the_tolerance_keeps_the_formulas_own_profiles_above_high_across_the_window(lam):
    """A mismatch within the tolerance cannot by itself say 'no': the formula at tau and at tau x sqrt(2) correlates
    above HIGH everywhere in the informative window; a factor 2 (the tolerance before) does not."""
    assert MATCHED_TAU_TOLERANCE == pytest.approx(np.log(np.sqrt(2.0)))
    lo, hi = informative_window(lam)
    taus = np.geomspace(lo, hi, 60)
    within = [pearson(formula_profile(lam, t), formula_profile(lam, t * np.exp(MATCHED_TAU_TOLERANCE))) for t in taus]
    factor_2 = [pearson(formula_profile(lam, t), formula_profile(lam, 2 * t)) for t in taus]
    assert min(within) > HIGH > min(factor_2)


def test_a_pair_beyond_the_tolerance_is_not_matched():
    # only the last snapshots are off the bound; the fast runs' tau there is 1.5x the slow runs' (48 vs 32)
    energy, fits = synthetic(lambda arch, step: step < LAST)
    fits = fits.assign(tau=np.where((fits.arch == "fast") & (fits.step == LAST), 48.0, fits.tau))
    pairs = pairwise_consistency(final_profiles(energy))
    matched = matched_tau(pairs, tau_distance(pairs, snapshot_profiles(energy, fits)))
    arch = matched[matched.relation == "architecture"]
    assert np.allclose(arch["log_tau_distance"], np.log(1.5)) and not arch["matched"].any()
    assert matched_tau(pairs, tau_distance(pairs, snapshot_profiles(energy, fits)), np.log(2.0))["matched"].all()
