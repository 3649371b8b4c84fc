"""The replication record: how far each run family was trained, the per-claim overview and the written files; the
README's verdict summary, read back from the records, and the README holding what they give now."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from firstlayer.record import (
    HOLDS,
    README_BEGIN,
    README_END,
    RECORD_FIGURES,
    claim_overview,
    main,
    per_dataset,
    read_markdown_table,
    read_record,
    readme_records,
    record_markdown,
    replace_block,
    scale_line,
    training_reached,
    update_readme,
    verdict_cell,
    verdict_summary,
    write_record,
)
from firstlayer.replication import COLUMNS, VERDICTS, to_markdown, verdict

REPO = Path(__file__).resolve().parents[1]


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
    assert "(4500 s)\n- scale: 1 dataset(s) as configured, on a CPU; " in text
    assert "the paper's scale is CIFAR-10, CelebA and ImageNet on GPUs\n\nA note.\n\nWritten by" in text
    assert "    snakemake --cores all" in text and "`abc123`" in text and "75.0 minutes (4500 s)" in text
    assert "| tex | 0.090% | 0.150% |" in text  # label information per kernel size
    assert "| tex | cnn | random | 2 | 100 | 0.300 | 0.100 | 0.100 | 3 | 1 |" in text
    assert "| labels | 1 | 1 | 0 | 0 | partly |" in text and "| table |" in text
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


def replication_table(rows: list[tuple[str, str, str, object]]) -> pd.DataFrame:
    """A replication table of (claim, condition, measured, holds or verdict word) rows, the other columns filled."""
    frame = pd.DataFrame(rows, columns=["claim", "condition", "measured", "holds"])
    frame["paper"], frame["criterion"], frame["value"] = "the paper | §3", "r >= 0.9", np.nan
    frame["verdict"] = [verdict(h) for h in frame["holds"]]
    frame["holds"] = frame["verdict"].map(HOLDS).astype(object)
    return frame[COLUMNS]


def write_synthetic_record(folder: Path, name: str, rows: list[tuple[str, str, str, object]]) -> Path:
    """A record as record_markdown writes it, around a replication table written by replication.to_markdown."""
    tables = {**run_tables(), "replication": replication_table(rows)}
    text = record_markdown(name, "snakemake --cores all", "0123456789abcdef", "2 cores of X", 402.0, tables,
                           to_markdown(tables["replication"]))  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.md").write_text(text)
    return folder / f"{name}.md"


ROWS_A = [
    ("seeds agree", "arch a", "r = 0.95 [0.9, 0.99] (3 pairs)", True),
    ("seeds agree", "arch b | k7", "r = 0.80 (2 pairs); final step r = 0.7 (no)", False),
    ("tau grows", "linear", "not run: no snapshots", None),
]
ROWS_B = [("seeds agree", f"arch {i}", f"r = 0.{i}", False) for i in range(5)] + [("new claim", "x", "r = 1", True)]


def test_holds_words_read_back_to_what_verdict_writes():
    assert set(HOLDS) == set(VERDICTS)
    assert all(verdict(word) == word for word in HOLDS)
    assert all(verdict(holds) == word for word, holds in HOLDS.items() if word in ("yes", "no"))
    assert HOLDS["yes"] is True and HOLDS["no"] is False
    assert all(HOLDS[w] is None for w in VERDICTS if w not in ("yes", "no"))
    assert verdict(HOLDS["not run"]) == "not run"


def test_a_markdown_table_reads_back_with_its_escaped_pipes():
    frame = pd.DataFrame({"a": ["x | y", "z"], "b": [1.5, float("nan")]})
    from firstlayer.record import _markdown

    back = read_markdown_table("text above\n\n" + _markdown(frame) + "\ntext below | not a table")
    assert (
        list(back.columns) == ["a", "b"]
        and back["a"].tolist() == ["x | y", "z"]
        and back["b"].tolist() == ["1.500", ""]
    )
    with pytest.raises(ValueError, match="no Markdown table"):
        read_markdown_table("no table here")


def test_a_record_reads_back_its_run_and_replication_table(tmp_path: Path):
    record = read_record(write_synthetic_record(tmp_path, "short", ROWS_A).read_text())
    assert (record["name"], record["command"], record["commit"]) == (
        "short",
        "snakemake --cores all",
        "0123456789abcdef",
    )
    assert record["host"] == "2 cores of X" and record["wall"] == "6.7 minutes (402 s)"
    table = record["replication"]
    assert table["holds"].tolist() == [True, False, None] and table["condition"][1] == "arch b | k7"
    assert claim_overview(table).set_index("claim").loc["seeds agree", "verdict"] == "partly"
    with pytest.raises(ValueError, match="not a replication record"):
        read_record("# Something else\n")


def test_the_verdict_summary_has_a_column_per_record_and_names_few_failing_rows(tmp_path: Path):
    records = [write_synthetic_record(tmp_path / "docs", "a_short", ROWS_A),
               write_synthetic_record(tmp_path / "docs", "b_long", ROWS_B)]  # fmt: skip
    assert readme_records(tmp_path / "docs") == records
    summary = verdict_summary(records, tmp_path)
    table = read_markdown_table(summary).set_index("claim")
    assert list(table.columns) == ["[a_short](docs/a_short.md)", "[b_long](docs/b_long.md)"]
    assert list(table.index) == ["seeds agree", "tau grows", "new claim"]  # first record's order, then the others'
    short, long = table.columns
    assert table.loc["seeds agree", short] == "partly, 1 of 2 rows hold; fails: arch b | k7 (r = 0.80)"
    assert table.loc["seeds agree", long] == "no, 0 of 5 rows hold"  # more than three failing rows: counted only
    assert table.loc["tau grows", short] == "not run" and table.loc["tau grows", long] == "—"
    assert table.loc["new claim", short] == "—" and table.loc["new claim", long] == "yes, 1 of 1 rows hold"
    assert (
        "- [a_short](docs/a_short.md): `snakemake --cores all`, commit `0123456`, wall time 6.7 minutes (402 s)"
        in summary
    )
    assert "arch b \\| k7" in summary  # the pipe stays escaped in the README's table


def test_the_readme_block_is_replaced_and_checked(tmp_path: Path, capsys):
    write_synthetic_record(tmp_path / "docs" / "replication", "default", ROWS_A)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nabove\n\n{README_BEGIN}\nstale\n{README_END}\n\nbelow\n")
    args = ["readme", "--readme", str(readme), "--records", str(tmp_path / "docs" / "replication")]
    assert main([*args, "--check"]) == 1 and "-stale" in capsys.readouterr().out
    assert main(args) == 0
    text = readme.read_text()
    assert "stale" not in text and text.startswith("# title\n\nabove\n\n") and text.endswith(f"{README_END}\n\nbelow\n")
    assert "[default](docs/replication/default.md)" in text
    assert main([*args, "--check"]) == 0 and update_readme(readme, tmp_path / "docs" / "replication")
    with pytest.raises(ValueError, match="expected one"):
        replace_block("no markers", "block")


def test_the_readme_verdict_summary_is_what_the_records_give_now():
    """The README's block cannot go stale: after a record changes, `python -m firstlayer.record readme` rewrites it."""
    readme = REPO / "README.md"
    text = readme.read_text()
    expected = replace_block(text, verdict_summary(readme_records(REPO / "docs" / "replication"), REPO))
    assert text == expected, "README.md's verdict summary is stale: run `python -m firstlayer.record readme`"


def test_a_record_written_into_the_readmes_records_folder_rewrites_its_summary(tmp_path: Path):
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "figures").mkdir()
    tables = {**run_tables(), "replication": replication_table(ROWS_A)}
    for name, frame in tables.items():
        frame.to_parquet(results / "tables" / f"{name}.parquet")
    (results / "tables" / "replication.md").write_text("# Replication\n\n" + to_markdown(tables["replication"]))
    for figure in RECORD_FIGURES:
        Image.new("RGB", (8, 8)).save(results / "figures" / f"{figure}.png")
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n")
    out = tmp_path / "docs" / "replication"
    args = [str(results), "--name", "new", "--command", "snakemake", "--wall-seconds", "60", "--commit", "abc"]
    assert main([*args, "--out", str(tmp_path / "elsewhere"), "--readme", str(readme)]) == 0
    assert readme.read_text() == f"{README_BEGIN}\n{README_END}\n"  # a record outside docs/replication: untouched
    assert main([*args, "--out", str(out), "--readme", str(readme)]) == 0
    assert "[new](docs/replication/new.md)" in readme.read_text() and update_readme(readme, out, check=True)


# ------------------------------------------------------------------------ the verdict words beyond yes and no

ROWS_WORDS = [
    ("seeds agree", "arch a", "r = 0.97 [0.95, 0.99] over 6 informative of 6 pairs", "yes"),
    ("seeds agree", "arch b", "r = 0.93 [0.85, 0.97] over 6 informative of 6 pairs", "undecided"),
    ("seeds agree", "arch c", "no informative pair of 6", "not informative"),
    ("labels agree", "arch a", "no informative pair of 3", "not informative"),
    ("labels agree", "arch b", "r = 0.5 [0.4, 0.6] over 3 informative of 3 pairs", "undecided"),
    ("flatter", "arch a", "not applicable: dataset grey: too small", "not applicable"),
    ("frozen", "(none)", "not run: no frozen runs", "not run"),
    ("fits", "arch a", "r = 0.5 [0.4, 0.6] over 3 informative of 3 runs", "no"),
]


def test_claim_overview_counts_undecided_rows():
    overview = claim_overview(replication_table(ROWS_WORDS)).set_index("claim")
    assert list(overview.columns) == ["holds", "fails", "undecided", "not run", "verdict"]
    seeds = overview.loc["seeds agree"]
    assert (seeds["holds"], seeds["fails"], seeds["undecided"], seeds["not run"]) == (1, 0, 2, 0)
    assert seeds["verdict"] == "yes where decided"  # every decided row holds; undecided ones could still fail
    assert overview.loc["labels agree", "verdict"] == "undecided" and overview.loc["labels agree", "undecided"] == 2
    assert overview.loc["flatter", "verdict"] == "not run" and overview.loc["flatter", "not run"] == 1
    assert overview.loc["frozen", "verdict"] == "not run" and overview.loc["fits", "verdict"] == "no"
    # the counts add up to the rows of each claim
    assert (overview[["holds", "fails", "undecided", "not run"]].sum(axis=1) == [3, 2, 1, 1, 1]).all()
    # a table with 'holds' only (written before the verdict column) still reads
    old = claim_overview(pd.DataFrame({"claim": ["x", "x"], "holds": [True, None]})).iloc[0]
    assert (old["holds"], old["undecided"], old["not run"], old["verdict"]) == (1, 0, 1, "yes")


def test_a_record_reads_back_every_verdict_word(tmp_path: Path):
    path = write_synthetic_record(tmp_path, "words", ROWS_WORDS)
    assert "| undecided |" in path.read_text() and "| not informative |" in path.read_text()
    table = read_record(path.read_text())["replication"]
    assert table["verdict"].tolist() == [w for *_, w in ROWS_WORDS]
    assert table["holds"].tolist() == [True, None, None, None, None, None, None, False]
    assert claim_overview(table).set_index("claim").loc["seeds agree", "undecided"] == 2
    summary = read_markdown_table(verdict_summary([path], tmp_path)).set_index("claim")
    column = summary.columns[0]
    assert summary.loc["seeds agree", column] == "yes where decided, 1 of 1 rows hold, 2 undecided"
    assert summary.loc["labels agree", column] == "undecided" and summary.loc["flatter", column] == "not run"
    assert summary.loc["fits", column] == "no, 0 of 1 rows hold"
    with pytest.raises(ValueError, match="'holds' has \\['maybe'\\]"):
        read_record(path.read_text().replace("| undecided |", "| maybe |"))


def test_the_scale_line_says_the_arithmetic_and_the_papers_scale():
    metrics = run_tables()["metrics"]
    line = scale_line("16 cores of X, GPU NVIDIA H200; torch 2", metrics.assign(precision="bfloat16"))
    assert line.startswith("- scale: 1 dataset(s) as configured, on a GPU; layers above the first in bfloat16 ")
    assert "(the first layer is float32)" in line and line.endswith(
        "the paper's scale is CIFAR-10, CelebA and ImageNet on GPUs\n")  # fmt: skip
    mixed = metrics.assign(precision=np.where(metrics.seed == 0, "bfloat16", "float32"))
    assert "in bfloat16 and float32 (" in scale_line("2 cores of X, no GPU; torch 2", mixed)
    line = scale_line("2 cores of X, no GPU; torch 2", metrics)
    assert "on a CPU" in line and "in not recorded" in line and "the paper's scale" in line
    two = pd.concat([metrics, metrics.assign(dataset="rot")], ignore_index=True)
    assert "2 dataset(s)" in scale_line("no GPU", two)
    text = record_markdown("r", "snakemake", "abc", "2 cores, no GPU", 60.0,
                           {**run_tables(), "metrics": metrics.assign(precision="bfloat16")}, "| t |\n")  # fmt: skip
    assert "- scale: 1 dataset(s) as configured, on a CPU; layers above the first in bfloat16" in text


def test_a_failing_second_order_row_is_named_by_its_i2_and_other_rows_by_their_first_clause():
    second = "the dataset's labels carry no class-covariance information (second order)"
    measured = "k = 3: I1 = 0.671 nats (null 0.0046), I2 = 8.48 (null 0.12, z = 308), k = 5: I1 = 0.01 nats"
    rows = pd.DataFrame([
        {"claim": second, "condition": "dataset photos", "measured": measured, "holds": False, "verdict": "no"},
        {"claim": second, "condition": "dataset polarity", "measured": "k = 3: I1 = 1e-06 nats (null 1.5e-05), "
         "I2 = 1e-12 (null 0.0075, z = -2)", "holds": True, "verdict": "yes"},
    ])  # fmt: skip
    assert verdict_cell(rows).endswith("fails: dataset photos (k = 3: I2 = 8.48 nats)")
    seeds = rows.assign(claim="seeds agree", measured="r = 0.80 [0.7, 0.9] over 3 informative of 3 pairs; null")
    assert verdict_cell(seeds).endswith("fails: dataset photos (r = 0.80)")
