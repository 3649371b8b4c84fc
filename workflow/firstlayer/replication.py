"""The replication table: each claim of PAPER.md section 3 (and the theory of sections 4-5), the paper's evidence,
what this run measured, the criterion applied and whether the claim holds here. Every number comes from the run's
tables; a claim whose experiment is not in the run's grid says "not run"."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Correlation above which profiles count as "highly consistent" (fixed before looking at any result).
HIGH = 0.9
#: Frozen first layer: "comparable accuracy" means within this many accuracy points of full training.
ACCURACY_MARGIN = 0.05
#: Datasets whose labels carry less than this share of patch variance between class means satisfy the theory's
#: assumption for true = random labels.
LOW_LABEL_INFORMATION = 0.01

COLUMNS = ["claim", "paper", "condition", "measured", "value", "criterion", "holds"]


def _row(claim: str, paper: str, condition: str, measured: str, value: float, criterion: str, holds) -> dict:
    return dict(zip(COLUMNS, [claim, paper, condition, measured, value, criterion, holds], strict=True))


def _not_run(claim: str, paper: str, criterion: str, why: str) -> dict:
    return _row(claim, paper, "(none)", f"not run: {why}", np.nan, criterion, None)


def _mean_ci(g: pd.DataFrame) -> str:
    return f"r = {g['mean'].mean():.3f} [{g['ci_low'].min():.3f}, {g['ci_high'].max():.3f}] ({int(g['n'].sum())} pairs)"


def consistency_rows(summary: pd.DataFrame, pairs: pd.DataFrame, label_info: pd.DataFrame) -> list[dict]:
    """Seeds, architectures, datasets, true vs random (with the label-information diagnostic), trained vs init."""
    rows = []
    paper = "profiles correlate highly across seeds, architectures, datasets and true vs random labels (§3)"
    s = summary[summary.kind == "W-W0"]
    for rel, claim in (
        ("seed", "seed vs seed"),
        ("architecture", "architecture vs architecture"),
        ("dataset", "dataset vs dataset"),
    ):
        g = s[s.relation == rel]
        name = f"W - W0 profiles agree across {claim.split(' vs ')[0]}s"
        crit = f"mean correlation >= {HIGH}"
        if g.empty:
            rows.append(_not_run(name, paper, crit, f"the grid has no pair differing only in {rel}"))
            continue
        for arch, a in g.groupby("arch", sort=True):
            mean = float((a["mean"] * a["n"]).sum() / a["n"].sum())
            rows.append(_row(name, paper, f"{claim}, arch {arch}", _mean_ci(a), mean, crit, bool(mean >= HIGH)))
    lab = pairs[(pairs.kind == "W-W0") & (pairs.relation == "labels")]
    name = "true vs random labels give the same profile"
    crit = f"mean correlation >= {HIGH}; expected only where labels carry no patch-mean information"
    if lab.empty:
        rows.append(_not_run(name, paper, crit, "the grid has no true/random pair"))
    for (dataset, arch), g in lab.groupby(["dataset_a", "arch_a"], sort=True):
        info = label_info[label_info.dataset == dataset]
        share = float(info["between_class_share"].iloc[0]) if len(info) else np.nan
        mean = float(g["correlation"].mean())
        measured = (
            f"r = {mean:.3f} ({len(g)} pairs); label information: {share:.2%} of patch variance between "
            f"class means ({'low' if share < LOW_LABEL_INFORMATION else 'high'})"
        )
        rows.append(_row(name, paper, f"dataset {dataset}, arch {arch}", measured, mean, crit, bool(mean >= HIGH)))
    init = summary[(summary.kind == "W") & (summary.relation == "trained vs init")]
    seeds = summary[(summary.kind == "W") & (summary.relation == "seed")]
    name = "trained profiles are far from the initial one"
    crit = "trained-vs-init correlation below the seed-vs-seed correlation of trained W"
    if init.empty or seeds.empty:
        rows.append(
            _not_run(
                name,
                "trained profiles are very different from the initial weights' profile (§3)",
                crit,
                "needs two seeds of a run family",
            )
        )
    for arch, g in init.groupby("arch", sort=True):
        other = seeds[seeds.arch == arch]
        if other.empty:
            continue
        r_init, r_seed = float(g["mean"].mean()), float(other["mean"].mean())
        rows.append(
            _row(
                name,
                "trained profiles are very different from the initial weights' profile (§3)",
                f"arch {arch}, raw W",
                f"trained vs init r = {r_init:.3f}; seed vs seed r = {r_seed:.3f}",
                r_init,
                crit,
                bool(r_init < r_seed),
            )
        )
    return rows


def frozen_rows(frozen: pd.DataFrame) -> list[dict]:
    paper = "with the first layer frozen at its random init, accuracy is comparable to full training (§3)"
    crit = (
        f"frozen test accuracy >= trained - {ACCURACY_MARGIN:.2f}, where the trained network beats chance "
        f"(the most frequent test class) by {ACCURACY_MARGIN:.2f}"
    )
    name = "a frozen random first layer costs little accuracy"
    if frozen.empty:
        return [_not_run(name, paper, crit, "no run family has both true-label and frozen runs")]
    rows = []
    for r in frozen.itertuples():
        measured = f"test accuracy trained {r.test_accuracy_trained:.3f}, frozen {r.test_accuracy_frozen:.3f}"
        chance = getattr(r, "chance", np.nan)
        informative = not (chance == chance and r.test_accuracy_trained < chance + ACCURACY_MARGIN)
        holds = bool(r.difference >= -ACCURACY_MARGIN) if informative else None
        if not informative:
            measured += f"; not informative: training did not beat chance ({chance:.3f})"
        rows.append(
            _row(name, paper, f"dataset {r.dataset}, arch {r.arch}", measured, float(r.difference), crit, holds)
        )
    return rows


def theory_rows(check: pd.DataFrame, fits: pd.DataFrame, label_info: pd.DataFrame) -> list[dict]:
    rows = []
    paper = "linear CNNs trained by gradient descent from a small init follow a closed form (§4)"
    name = "gradient descent on linear patch filters equals the closed form"
    crit = "weights within 1e-9 relative at every step; bank profile vs formula r >= 0.99 (K >= 256)"
    if check.empty:
        rows.append(_not_run(name, paper, crit, "no linear check in this run"))
    for dataset, g in check.groupby("dataset", sort=True):
        err, corr = float(g["max_relative_weight_error"].max()), float(g["correlation_formula"].min())
        k = int(g["filters"].iloc[0])
        rows.append(
            _row(
                name,
                paper,
                f"dataset {dataset}, K = {k} filters, {g['step'].nunique()} steps",
                f"max weight error {err:.1e}; min profile r = {corr:.4f}",
                corr,
                crit,
                bool(err <= 1e-9 and corr >= 0.99 and k >= 256),
            )
        )
    one = fits[(fits.formula == "one_parameter") & (fits.kind == "W-W0")]
    aware = fits[(fits.formula == "init_aware") & (fits.kind == "W-W0")]
    low = set(label_info.loc[label_info.between_class_share < LOW_LABEL_INFORMATION, "dataset"])
    name = "the formula fits the trained linear CNN"
    crit = "median one-parameter r >= 0.95 over snapshots, on datasets whose labels carry no patch-mean information"
    lin = one[(one.model == "linear") & one.dataset.isin(low)]
    if lin.empty:
        rows.append(_not_run(name, paper, crit, "no linear CNN trained on a dataset with low label information"))
    for (dataset, labels), g in lin.groupby(["dataset", "labels"], sort=True):
        a = aware[(aware.model == "linear") & (aware.dataset == dataset) & (aware.labels == labels)]
        med = float(g["correlation"].median())
        rows.append(
            _row(
                name,
                paper,
                f"linear CNN, dataset {dataset}, {labels} labels, W - W0",
                f"one-parameter r median {med:.3f} (min {g['correlation'].min():.3f}, {len(g)} snapshots);"
                f" init-aware median {a['correlation'].median():.3f}",
                med,
                crit,
                bool(med >= 0.95),
            )
        )
    name = "effective time tau grows with training"
    crit = (
        "tau at the last snapshot above tau at the first, and Spearman(step, tau) >= 0.7, in every linear CNN run "
        "(early fits sit at the grid's lower end, where the formula's shape no longer depends on tau)"
    )
    runs = one[one.model == "linear"]
    if runs.empty:
        rows.append(_not_run(name, paper, crit, "no linear CNN in the grid"))
    else:
        mono, spearman, grows = [], [], []
        for _, g in runs.groupby(["dataset", "arch", "labels", "seed"]):
            tau = g.sort_values("step")["tau"].to_numpy()
            mono.append(bool(np.all(np.diff(tau) >= -1e-12 * tau.max())))
            ranks = pd.Series(tau).rank().to_numpy()
            steps = np.arange(len(tau), dtype=float)
            spearman.append(float(np.corrcoef(steps, ranks)[0, 1]) if np.ptp(ranks) > 0 else 0.0)
            grows.append(bool(tau[-1] > tau[0]))
        measured = (
            f"Spearman(step, tau) median {np.median(spearman):.2f} (min {min(spearman):.2f}); last > first in "
            f"{sum(grows)}/{len(grows)} runs; strictly non-decreasing in {sum(mono)}/{len(mono)}"
        )
        holds = all(grows) and min(spearman) >= 0.7
        rows.append(
            _row(name, paper, "linear CNN, W - W0, all runs", measured, float(np.median(spearman)), crit, holds)
        )
    paper = (
        "the formula fits nonlinear CNNs: r ~ 0.96 VGG-11/CIFAR-10, 0.97 VGG-11/CelebA, 0.92 ResNet-18/ImageNet (§3)"
    )
    name = "the formula fits nonlinear CNNs"
    crit = f"median one-parameter r of final W - W0 profiles >= {HIGH}"
    final = one[one.groupby(["dataset", "arch", "labels", "seed"])["step"].transform("max") == one["step"]]
    nonlinear = final[final.model != "linear"]
    if nonlinear.empty:
        rows.append(_not_run(name, paper, crit, "no nonlinear network in the grid"))
    for arch, g in nonlinear.groupby("arch", sort=True):
        med = float(g["correlation"].median())
        a = aware[(aware.arch == arch)]
        a = a[a.groupby(["dataset", "arch", "labels", "seed"])["step"].transform("max") == a["step"]]
        rows.append(
            _row(
                name,
                paper,
                f"arch {arch}, final W - W0, {len(g)} runs",
                f"one-parameter r median {med:.3f}; init-aware {a['correlation'].median():.3f}",
                med,
                crit,
                bool(med >= HIGH),
            )
        )
    return rows


def whitening_rows(summary: pd.DataFrame) -> list[dict]:
    paper = "as training goes on the first layer tends to whiten its input patches (§4-5)"
    name = "training makes the response flatter than at init"
    crit = "final W flatter (geometric / arithmetic mean of r_i^2) than W0 in every run"
    learning = summary[summary.labels.isin(["true", "random"])]
    if learning.empty:
        return [_not_run(name, paper, crit, "no trained runs")]
    rows = []
    for arch, g in learning.groupby("arch", sort=True):
        frac = float((g["fraction_flatter_than_init"] * g["n_seeds"]).sum() / g["n_seeds"].sum())
        rows.append(
            _row(
                name,
                paper,
                f"arch {arch}",
                f"flatness data {g['data'].mean():.3f}, init {g['init'].mean():.3f}, trained "
                f"{g['trained'].mean():.3f}; {frac:.0%} of runs flatter than init",
                frac,
                crit,
                bool(frac == 1.0),
            )
        )
    return rows


def replication_table(
    summary: pd.DataFrame,
    pairs: pd.DataFrame,
    fits: pd.DataFrame,
    whitening: pd.DataFrame,
    frozen: pd.DataFrame,
    check: pd.DataFrame,
    label_info: pd.DataFrame,
) -> pd.DataFrame:
    """Every claim row, from the run's tables (see the module docstring)."""
    rows = [
        *consistency_rows(summary, pairs, label_info),
        *frozen_rows(frozen),
        *theory_rows(check, fits, label_info),
        *whitening_rows(whitening),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown (holds: yes / no / not run)."""

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| claim | paper | condition | measured | criterion | holds |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        holds = (
            "not run"
            if r.holds is None or (isinstance(r.holds, float) and np.isnan(r.holds))
            else ("yes" if r.holds else "no")
        )
        out.append(
            "| " + " | ".join(cell(v) for v in (r.claim, r.paper, r.condition, r.measured, r.criterion, holds)) + " |"
        )
    return "\n".join(out) + "\n"
