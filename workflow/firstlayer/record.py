"""A run's replication record, docs/replication/NAME.md: what ran, on which commit and machine, for how long; the
datasets' label information and how far every run family was trained; per claim, how many rows hold; the
replication table; small copies of four figures. ``python -m firstlayer.record --help``."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from firstlayer.analysis import last_step
from firstlayer.replication import verdict

#: The figures a record shows, as 128-colour PNGs beside it.
RECORD_FIGURES = ("profiles", "fit_overlay", "whitening", "matched_tau")
#: Columns that say which run family a row is about.
FAMILY = ["dataset", "arch", "labels"]


def machine() -> str:
    """'N cores of CPU MODEL, M GiB; torch X' for the machine this runs on (Linux; elsewhere what Python knows)."""
    model = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")
        ]
        model = names[0] if names else model
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    import torch

    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    versions = f"torch {torch.__version__}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores of {model}{memory}, {gpu}; {versions}"


def training_reached(metrics: pd.DataFrame, accuracy: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Per run family: seeds, steps, final train and held-out accuracy, and the median over seeds of the
    one-parameter tau fitted to the final W - W0 profile (with how many of those fits sit at the tau grid's bound)."""
    steps = metrics.groupby(FAMILY)["step"].max().rename("steps")
    one = fits[(fits.formula == "one_parameter") & (fits.kind == "W-W0")]
    final = one[last_step(one)]
    tau = final.groupby(FAMILY).agg(tau=("tau", "median"), tau_at_bound=("at_bound", "sum"))
    acc = accuracy.set_index(FAMILY)[["n_seeds", "train_accuracy", "test_accuracy", "chance"]]
    out = acc.join(steps).join(tau).reset_index()
    out["tau_at_bound"] = out["tau_at_bound"].fillna(0).astype(int)
    return out[[*FAMILY, "n_seeds", "steps", "train_accuracy", "test_accuracy", "chance", "tau", "tau_at_bound"]]


def per_dataset(consistency: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and architecture (the replication table pools datasets): the seed-vs-seed correlation of final
    W - W0 profiles (mean, min, pairs) and the median one-parameter r of the formula fit to them (runs)."""
    seeds = consistency[(consistency.kind == "W-W0") & (consistency.relation == "seed")]
    seeds = seeds.rename(columns={"dataset_a": "dataset", "arch_a": "arch"}).groupby(["dataset", "arch"])
    agree = seeds["correlation"].agg(seed_vs_seed="mean", seed_vs_seed_min="min", pairs="count")
    one = fits[(fits.formula == "one_parameter") & (fits.kind == "W-W0")]
    final = one[last_step(one)].groupby(["dataset", "arch"])
    fit = final["correlation"].agg(formula_fit="median", runs="count")
    out = agree.join(fit, how="outer").reset_index()
    out["pairs"] = out["pairs"].fillna(0).astype(int)
    return out


def label_information_table(label_info: pd.DataFrame) -> pd.DataFrame:
    """Between-class share of the patch variance, one row per dataset, one column per kernel size."""
    wide = label_info.pivot_table(index="dataset", columns="kernel_size", values="between_class_share")
    wide.columns = [f"k = {k}" for k in wide.columns]
    return wide.reset_index()


def claim_overview(table: pd.DataFrame) -> pd.DataFrame:
    """Per claim of a replication table (in its order): rows that hold, fail and were not run, and a verdict:
    'yes' (every judged row holds), 'no' (none does), 'partly', or 'not run'."""
    rows = []
    for claim, g in table.groupby("claim", sort=False):
        held = [verdict(v) for v in g["holds"]]
        yes, no = held.count("yes"), held.count("no")
        overall = "not run" if yes + no == 0 else "yes" if no == 0 else "no" if yes == 0 else "partly"
        rows.append({"claim": claim, "holds": yes, "fails": no, "not run": len(g) - yes - no, "verdict": overall})
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.{digits}g}" if abs(v) >= 10 else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def record_markdown(
    name: str,
    command: str,
    commit: str,
    host: str,
    wall_seconds: float,
    tables: dict[str, pd.DataFrame],
    replication_md: str,
    note: str = "",
) -> str:
    """The record's Markdown from the run's tables (``tables``: replication, label_information_summary, metrics,
    accuracy, fits, consistency) and the Markdown replication table."""
    info = label_information_table(tables["label_information_summary"])
    for column in info.columns[1:]:
        info[column] = info[column].map(lambda v: "" if np.isnan(v) else f"{v:.3%}")
    reached = training_reached(tables["metrics"], tables["accuracy"], tables["fits"])
    reached["tau"] = reached["tau"].map(lambda v: "" if np.isnan(v) else f"{v:.3g}")
    figures = "\n\n".join(f"![{f}]({name}/{f}.png)" for f in RECORD_FIGURES)
    note = f"\n{note}\n" if note else ""
    return f"""# Replication record: {name}

    {command}

- commit `{commit}`
- machine: {host}
- wall time of the command: {wall_seconds / 60:.1f} minutes ({wall_seconds:.0f} s)
{note}
Written by `python -m firstlayer.record` from the run's tables; the criteria are those of docs/method.md
(*Replication criteria*), fixed before this run.

## Datasets: label information (share of the patch variance between class means)

{_markdown(info)}
## How far each run family was trained

Accuracies are the mean over seeds at the last step (train accuracy on the run's own labels, random ones included;
held-out accuracy on the test split); chance is the most frequent test class; tau is the median over seeds of the
one-parameter fit to the final W - W0 profile, and `tau_at_bound` counts the seeds whose fit sits at the end of the
tau grid (their tau says only "at least this").

{_markdown(reached)}
## Per dataset: seeds and the formula

The replication table pools the datasets of an architecture; here each dataset on its own. `seed_vs_seed`: mean
Pearson r of the final W - W0 profiles of runs that differ only in seed (true and random labels); `formula_fit`:
median one-parameter r of the formula fitted to each run's final W - W0 profile.

{_markdown(per_dataset(tables["consistency"], tables["fits"]))}
## Verdicts per claim

{_markdown(claim_overview(tables["replication"]))}
## The replication table

{replication_md}
## Figures

{figures}
"""


def quantized_png(source: Path, target: Path, colours: int = 128) -> None:
    """A small copy of a figure: RGB reduced to ``colours`` colours, optimised PNG."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(source).convert("RGB").quantize(colours).save(target, optimize=True)


def write_record(
    results: Path, out: Path, name: str, command: str, commit: str, wall_seconds: float, note: str = ""
) -> Path:
    """Write ``out/NAME.md`` and ``out/NAME/<figure>.png`` from a finished run's ``results`` folder."""
    tables_dir = results / "tables"
    names = ("replication", "label_information_summary", "metrics", "accuracy", "fits", "consistency")
    tables = {n: pd.read_parquet(tables_dir / f"{n}.parquet") for n in names}
    replication_md = (tables_dir / "replication.md").read_text().split("\n", 2)[2]  # without its title
    text = record_markdown(name, command, commit, machine(), wall_seconds, tables, replication_md, note)
    for figure in RECORD_FIGURES:
        quantized_png(results / "figures" / f"{figure}.png", out / name / f"{figure}.png")
    path = out / f"{name}.md"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m firstlayer.record", description=__doc__)
    parser.add_argument("results", type=Path, help="the finished run's results/ folder")
    parser.add_argument("--name", required=True, help="the record's name, e.g. embedded_long")
    parser.add_argument("--command", required=True, help="the command that made the run, as typed")
    parser.add_argument("--wall-seconds", type=float, required=True, help="the run's measured wall time")
    parser.add_argument("--commit", help="the commit the run used (default: git rev-parse HEAD here)")
    parser.add_argument("--note", default="", help="a paragraph under the header (e.g. how the run was made)")
    parser.add_argument("--out", type=Path, default=Path("docs/replication"), help="where the record goes")
    args = parser.parse_args(argv)
    commit = (
        args.commit
        or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    )
    print(write_record(args.results, args.out, args.name, args.command, commit, args.wall_seconds, args.note))


if __name__ == "__main__":
    main()
