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
    consistency_summary,
    final_profiles,
    matched_tau,
    matched_tau_summary,
    pairwise_consistency,
    snapshot_profiles,
    tau_distance,
)
from firstlayer.io import Stamp, write_table
from firstlayer.replication import HIGH, consistency_rows
from firstlayer.theory import formula_profile

STEPS = (10, 20, 40, 80, 160, 320)
EIGENVALUES = np.geomspace(1.0, 1e-3, 27)
#: tau per step: the "fast" architecture reaches 8x the slow one's tau at every step, so at the last step its
#: profile has another shape, while its profile at step s equals the slow one's at step 8 s (exactly the formula).
RATE = {"slow": 0.1, "fast": 0.8}
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
                                        "eigenvalue": EIGENVALUES, "energy": profile}))  # fmt: skip
            fits.append({**keys, "kind": "W-W0", "step": step, "formula": "one_parameter", "tau": tau,
                         "at_bound": at_bound(arch, step), "correlation": 1.0})  # fmt: skip
    return pd.concat(energy, ignore_index=True), pd.DataFrame(fits)


def analyse(energy: pd.DataFrame, fits: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    pairs = pairwise_consistency(final_profiles(energy))
    matched = matched_tau(pairs, tau_distance(pairs, snapshot_profiles(energy, fits)))
    return pairs, matched, matched_tau_summary(matched, n_boot=200)


@pytest.fixture(scope="module")
def synthetic_run():
    return analyse(*synthetic())


def test_profiles_equal_at_equal_tau_are_consistent_at_matched_tau_not_at_the_last_step(synthetic_run):
    pairs, matched, summary = synthetic_run
    arch = matched[matched.relation == "architecture"]
    assert len(arch) == 4 and arch["matched"].all()
    assert (arch["correlation_final"] < 0.5).all()  # tau 32 against 256
    assert np.allclose(arch["correlation"], 1.0) and np.allclose(arch["log_tau_distance"], 0.0)
    assert (arch["tau_a"] == arch["tau_b"]).all() and (arch["step_a"] != arch["step_b"]).all()
    row = summary[(summary.relation == "architecture")].iloc[0]
    assert row["arch"] == "(mixed)" and row["n"] == row["n_pairs"] == 4 and row["mean"] == pytest.approx(1.0)

    label_info = pd.DataFrame({"dataset": ["d"], "between_class_share": [0.001]})
    accuracy = pd.DataFrame(columns=["dataset", "arch", "labels", "train_accuracy", "test_accuracy"])
    rows = pd.DataFrame(
        consistency_rows(consistency_summary(pairs, n_boot=200), pairs, label_info, summary, matched, accuracy)
    )
    final, at_tau = rows[rows.condition.str.startswith("architecture vs architecture")].to_dict("records")
    assert final["holds"] is False and final["value"] < HIGH
    assert at_tau["holds"] is True and at_tau["condition"].endswith("at matched tau")
    assert at_tau["value"] == pytest.approx(1.0) and "final step r = " in at_tau["measured"]
    assert "(no)" in at_tau["measured"] and "4 of 4 pairs matched" in at_tau["measured"]
    # every final-step consistency row has its matched-tau row right after it
    consistency = rows[~rows.claim.str.contains("initial")]
    final, at_tau = consistency.iloc[0::2], consistency.iloc[1::2]
    assert len(final) == len(at_tau) == 6  # seed x 2 archs, architecture, dataset (not run), labels x 2 archs
    ran = final.condition != "(none)"  # dataset vs dataset: one dataset, both rows not run
    assert list(at_tau.condition[ran.to_numpy()]) == list(final.condition[ran] + ", at matched tau")
    assert (at_tau.criterion.str.contains("at matched tau")).all()


def test_equal_tau_at_every_step_matches_the_latest_snapshots(synthetic_run):
    _, matched, _ = synthetic_run
    seeds = matched[matched.relation == "seed"]
    assert len(seeds) == 4 and (seeds.step_a == 320).all() and (seeds.step_b == 320).all()
    assert np.allclose(seeds["correlation"], seeds["correlation_final"])


def test_snapshots_at_the_tau_bound_are_never_matched():
    # the fast runs' fits are at the bound at every step but the last: their tau 8 ... 128 would match the slow
    # runs' exactly, so without the exclusion every architecture pair would be matched at distance 0
    _, matched, _ = analyse(*synthetic(lambda arch, step: arch == "fast" and step < 320))
    arch = matched[matched.relation == "architecture"]
    fast_step = np.where(arch.arch_a == "fast", arch.step_a, arch.step_b)
    assert (fast_step == 320).all()
    assert np.allclose(arch["log_tau_distance"], np.log(8.0))  # slow tau 32 at its last step, fast 256
    assert not arch["matched"].any()
    seeds = matched[(matched.relation == "seed") & (matched.arch_a == "fast")]
    assert (seeds.step_a == 320).all() and seeds["matched"].all()


def test_a_run_with_every_fit_at_the_bound_is_unmatched_and_its_row_not_run():
    pairs, matched, summary = analyse(*synthetic(lambda arch, step: arch == "fast"))
    arch = matched[matched.relation == "architecture"]
    assert not arch["matched"].any() and arch["step_a"].isna().all() and arch["correlation"].isna().all()
    row = summary[summary.relation == "architecture"].iloc[0]
    assert row["n"] == 0 and row["n_pairs"] == 4 and np.isnan(row["mean"])
    label_info = pd.DataFrame({"dataset": ["d"], "between_class_share": [0.001]})
    accuracy = pd.DataFrame(columns=["dataset", "arch", "labels", "train_accuracy", "test_accuracy"])
    rows = pd.DataFrame(
        consistency_rows(consistency_summary(pairs, n_boot=200), pairs, label_info, summary, matched, accuracy)
    )
    at_tau = rows[rows.condition == "architecture vs architecture, arch (mixed), at matched tau"].iloc[0]
    assert at_tau["holds"] is None and at_tau["measured"].startswith("not run") and "0 of 4" in at_tau["measured"]


def test_tau_distance_correlates_every_pair_of_free_snapshots(synthetic_run):
    energy, fits = synthetic(lambda arch, step: step == 10)
    pairs = pairwise_consistency(final_profiles(energy))
    d = tau_distance(pairs, snapshot_profiles(energy, fits))
    assert len(d) == len(pairs[pairs.kind == "W-W0"]) * (len(STEPS) - 1) ** 2 and (d.step_a > 10).all()
    same = d[d.tau_a == d.tau_b]
    assert np.allclose(same["correlation"], 1.0) and (d["correlation"] <= 1 + 1e-12).all()


def test_the_rule_script_writes_the_three_tables(tmp_path: Path) -> None:
    """workflow/scripts/matched_tau.py with a stand-in ``snakemake``: tables with provenance, one summary row per
    relation and architecture."""
    energy, fits = synthetic()
    pairs = pairwise_consistency(final_profiles(energy))
    for name, table in (("energy", energy), ("fits", fits), ("pairs", pairs)):
        write_table(table, tmp_path / f"{name}.parquet", Stamp("abc", "c0de", name))
    out = {name: str(tmp_path / f"out_{name}.parquet") for name in ("matched", "summary", "distances")}
    snakemake = SimpleNamespace(
        input=SimpleNamespace(**{name: str(tmp_path / f"{name}.parquet") for name in ("energy", "fits", "pairs")}),
        output=SimpleNamespace(**out),
        log=[str(tmp_path / "matched_tau.log")],
        params=SimpleNamespace(analysis={"bootstrap": 50, "confidence": 0.9}, code="c0de"),
        rule="matched_tau",
    )
    runpy.run_path(str(REPO / "workflow" / "scripts" / "matched_tau.py"), init_globals={"snakemake": snakemake})
    matched, summary = pd.read_parquet(out["matched"]), pd.read_parquet(out["summary"])
    assert len(matched) == len(pairs[pairs.kind == "W-W0"]) and matched["config_hash"].nunique() == 1
    assert set(matched["made_by"]) == {"matched_tau"} and set(summary["code_hash"]) == set(matched["code_hash"])
    assert set(summary.relation) == set(matched.relation) and (summary["n_boot"] == 50).all()
    assert len(pd.read_parquet(out["distances"])) == len(matched) * len(STEPS) ** 2
