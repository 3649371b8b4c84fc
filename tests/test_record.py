"""The replication record: how far each run family was trained, the per-claim overview and the written files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from firstlayer.record import (
    RECORD_FIGURES,
    claim_overview,
    per_dataset,
    record_markdown,
    training_reached,
    write_record,
)


def run_tables() -> dict[str, pd.DataFrame]:
    metrics = pd.DataFrame([
        {"dataset": "tex", "arch": "cnn", "labels": lab, "seed": s, "step": step, "metric": "loss", "value": 1.0}
        for lab in ("true", "random") for s in (0, 1) for step in (1, 50, 100)
    ])  # fmt: skip
    accuracy = pd.DataFrame([
        {"dataset": "tex", "arch": "cnn", "labels": "true", "n_seeds": 2, "train_accuracy": 0.9, "test_accuracy": 0.6,
         "test_accuracy_std": 0.01, "chance": 0.1},
        {"dataset": "tex", "arch": "cnn", "labels": "random", "n_seeds": 2, "train_accuracy": 0.3,
         "test_accuracy": 0.1, "test_accuracy_std": 0.01, "chance": 0.1},
    ])  # fmt: skip
    fits = pd.DataFrame([
        {"formula": formula, "kind": kind, "dataset": "tex", "arch": "cnn", "labels": lab, "seed": s, "step": step,
         "tau": tau * (1 + s) * (10 if formula == "init_aware" or kind == "W" else 1),
         "at_bound": lab == "random" and s == 1, "correlation": 0.9 + 0.01 * s + 0.001 * (step == 50)}
        for formula in ("one_parameter", "init_aware") for kind in ("W", "W-W0") for lab in ("true", "random")
        for s in (0, 1) for step, tau in ((50, 1.0), (100, 2.0))
    ])  # fmt: skip
    replication = pd.DataFrame({
        "claim": ["seeds", "seeds", "labels", "labels", "tau"],
        "holds": [True, True, True, False, None],
    })  # fmt: skip
    label_info = pd.DataFrame([{"dataset": "tex", "kernel_size": k, "between_class_share": 0.0003 * k}
                               for k in (3, 5)])  # fmt: skip
    consistency = pd.DataFrame([
        {"kind": kind, "relation": rel, "dataset_a": "tex", "arch_a": "cnn", "correlation": r}
        for kind, rel, r in (("W-W0", "seed", 0.9), ("W-W0", "seed", 0.8), ("W", "seed", 0.1), ("W-W0", "labels", 0.2))
    ])  # fmt: skip
    return {"metrics": metrics, "accuracy": accuracy, "fits": fits, "replication": replication,
            "label_information_summary": label_info, "consistency": consistency}  # fmt: skip


def test_training_reached_takes_the_last_step_and_the_final_one_parameter_tau():
    t = run_tables()
    reached = training_reached(t["metrics"], t["accuracy"], t["fits"]).set_index("labels")
    assert (reached["steps"] == 100).all()
    assert reached.loc["true", "tau"] == pytest.approx(3.0)  # median of 2.0 and 4.0 (one-parameter, W - W0, final)
    assert reached.loc["random", "tau_at_bound"] == 1 and reached.loc["true", "tau_at_bound"] == 0
    assert reached.loc["random", "train_accuracy"] == 0.3 and reached.loc["true", "chance"] == 0.1


def test_per_dataset_has_seed_agreement_and_the_final_fit():
    t = run_tables()
    row = per_dataset(t["consistency"], t["fits"]).iloc[0]
    assert (row["dataset"], row["arch"], row["pairs"], row["runs"]) == ("tex", "cnn", 2, 4)
    assert row["seed_vs_seed"] == pytest.approx(0.85) and row["seed_vs_seed_min"] == 0.8
    assert row["formula_fit"] == pytest.approx(0.905)  # final step (100) only: seeds 0.90 and 0.91, both label modes


def test_claim_overview_counts_rows_per_claim_in_table_order():
    overview = claim_overview(run_tables()["replication"]).set_index("claim")
    assert list(overview.index) == ["seeds", "labels", "tau"]
    assert overview.loc["seeds", "verdict"] == "yes" and overview.loc["labels", "verdict"] == "partly"
    assert overview.loc["tau", "verdict"] == "not run" and overview.loc["tau", "not run"] == 1
    nan_row = pd.DataFrame({"claim": ["x"], "holds": [np.nan]})
    assert claim_overview(nan_row).iloc[0]["verdict"] == "not run"
    assert claim_overview(pd.DataFrame({"claim": ["x"], "holds": [False]})).iloc[0]["verdict"] == "no"


def test_the_record_has_the_run_the_datasets_the_training_and_the_table(tmp_path: Path):
    t = run_tables()
    text = record_markdown("long", "snakemake --cores all", "abc123", "2 cores", 4500.0, t, "| table |\n", "A note.")
    assert "(4500 s)\n\nA note.\n\nWritten by" in text
    assert "    snakemake --cores all" in text and "`abc123`" in text and "75.0 minutes (4500 s)" in text
    assert "| tex | 0.090% | 0.150% |" in text  # label information per kernel size
    assert "| tex | cnn | random | 2 | 100 | 0.300 | 0.100 | 0.100 | 3 | 1 |" in text
    assert "| labels | 1 | 1 | 0 | partly |" in text and "| table |" in text
    assert all(f"![{f}](long/{f}.png)" in text for f in RECORD_FIGURES)


def test_write_record_writes_the_markdown_and_small_figures(tmp_path: Path):
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "figures").mkdir()
    for name, frame in run_tables().items():
        frame.to_parquet(results / "tables" / f"{name}.parquet")
    (results / "tables" / "replication.md").write_text("# title\n\n| claim |\n|---|\n")
    rng = np.random.default_rng(0)
    for figure in RECORD_FIGURES:
        Image.fromarray(rng.integers(0, 255, (40, 60, 4), dtype=np.uint8)).save(results / "figures" / f"{figure}.png")
    path = write_record(results, tmp_path / "docs", "long", "snakemake", "abc", 60.0)
    assert path == tmp_path / "docs" / "long.md" and "| claim |" in path.read_text()
    assert "# title" not in path.read_text().split("## The replication table")[1]
    for figure in RECORD_FIGURES:
        small = Image.open(tmp_path / "docs" / "long" / f"{figure}.png")
        assert small.mode == "P" and small.size == (60, 40) and len(small.getcolors()) <= 128
