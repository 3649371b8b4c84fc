"""The replication table: per claim of the paper, its evidence, this run's measurement, the criterion and whether it
holds, all from the run's tables (docs/method.md, Replication criteria: each criterion and why)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from firstlayer.analysis import RUN_KEYS, last_step

#: Correlation above which profiles count as "highly consistent" (fixed before looking at any result).
HIGH = 0.9
#: Frozen first layer: "comparable accuracy" means within this many accuracy points of full training.
ACCURACY_MARGIN = 0.05
#: Datasets whose labels carry less than this share of patch variance between class means satisfy the theory's
#: assumption for true = random labels.
LOW_LABEL_INFORMATION = 0.01
#: A dataset's labels count as learned when its best true-label network's held-out accuracy beats chance by this.
LEARNED_MARGIN = 0.15

COLUMNS = ["claim", "paper", "condition", "measured", "value", "criterion", "holds"]


def _row(claim: str, paper: str, condition: str, measured: str, value: float, criterion: str, holds) -> dict:
    return dict(zip(COLUMNS, [claim, paper, condition, measured, value, criterion, holds], strict=True))


def _not_run(claim: str, paper: str, criterion: str, why: str) -> dict:
    return _row(claim, paper, "(none)", f"not run: {why}", np.nan, criterion, None)


def _mean_ci(g: pd.DataFrame) -> str:
    return f"r = {g['mean'].mean():.3f} [{g['ci_low'].min():.3f}, {g['ci_high'].max():.3f}] ({int(g['n'].sum())} pairs)"


def verdict(holds: Any) -> str:
    """A row's 'holds' in words: yes, no, or not run (None or NaN: no experiment, or one that cannot decide)."""
    if holds is None or (isinstance(holds, float) and np.isnan(holds)):
        return "not run"
    return "yes" if bool(holds) else "no"


def _matched_row(name: str, paper: str, condition: str, crit: str, stats: dict, final: float) -> dict:
    """The matched-tau row beside a final-step row (docs/method.md, Matched effective time): ``stats`` has the
    matched pairs' mean (and ci_low, ci_high where a bootstrap was run), n matched, n_pairs and the median
    |ln tau_a - ln tau_b|; no matched pair -> not run."""
    crit = f"{crit}, at matched tau (nearest snapshots off the tau grid's bound, tau within a factor 2)"
    condition = f"{condition}, at matched tau"
    final_text = f"final step r = {final:.3f} ({verdict(final >= HIGH)})"
    if stats["n"] == 0:
        why = f"no pair of runs at matched tau (0 of {stats['n_pairs']} pairs); {final_text}"
        return _row(name, paper, condition, f"not run: {why}", np.nan, crit, None)
    mean = float(stats["mean"])
    ci = f" [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]" if "ci_low" in stats else ""
    measured = (
        f"r = {mean:.3f}{ci} ({stats['n']} of {stats['n_pairs']} pairs matched, median distance in ln tau "
        f"{stats['median_log_tau_distance']:.2f}); {final_text}"
    )
    return _row(name, paper, condition, measured, mean, crit, bool(mean >= HIGH))


def _summary_stats(matched_summary: pd.DataFrame, rel: str, arch: str) -> dict:
    g = matched_summary[(matched_summary.kind == "W-W0") & (matched_summary.relation == rel)]
    g = g[g.arch == arch]
    if g.empty:
        return {"n": 0, "n_pairs": 0}
    return g.iloc[0].to_dict()


def _pair_stats(g: pd.DataFrame) -> dict:
    hit = g[g["matched"].astype(bool)]
    return {"n": len(hit), "n_pairs": len(g), "mean": hit["correlation"].mean(),
            "median_log_tau_distance": hit["log_tau_distance"].median()}  # fmt: skip


def consistency_rows(
    summary: pd.DataFrame,
    pairs: pd.DataFrame,
    label_info: pd.DataFrame,
    matched_summary: pd.DataFrame,
    matched: pd.DataFrame,
    accuracy: pd.DataFrame,
) -> list[dict]:
    """Seeds, architectures, datasets, true vs random (with the label-information diagnostic and how far the runs
    were trained), each followed by its row at matched effective time; trained vs init."""
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
            for c in (crit, f"{crit}, at matched tau"):
                rows.append(_not_run(name, paper, c, f"the grid has no pair differing only in {rel}"))
            continue
        for arch, a in g.groupby("arch", sort=True):
            mean = float((a["mean"] * a["n"]).sum() / a["n"].sum())
            rows.append(_row(name, paper, f"{claim}, arch {arch}", _mean_ci(a), mean, crit, bool(mean >= HIGH)))
            stats = _summary_stats(matched_summary, rel, arch)
            rows.append(_matched_row(name, paper, f"{claim}, arch {arch}", crit, stats, mean))
    rows += _label_rows(pairs, label_info, matched, accuracy, paper)
    rows += _init_rows(summary)
    return rows


def dataset_rows(accuracy: pd.DataFrame, label_info: pd.DataFrame) -> list[dict]:
    """Per dataset with true-label runs: are its labels learned, and do they carry patch-mean information? Both
    must hold for a true-vs-random comparison that is the paper's (``accuracy`` has a ``chance`` column)."""
    paper = "true and random labels are compared on a task the networks learn (CIFAR-10 test accuracy ~90%) (§3)"
    name = "the dataset's labels are learned and carry no patch-mean information"
    crit = (
        f"label information < {LOW_LABEL_INFORMATION:.0%} at every kernel size measured, and the best true-label "
        f"network's held-out accuracy >= chance + {LEARNED_MARGIN:.2f}"
    )
    true = accuracy[accuracy["labels"] == "true"]
    if true.empty:
        return [_not_run(name, paper, crit, "no true-label run")]
    rows = []
    for dataset, g in true.groupby("dataset", sort=True):
        info = label_info[label_info.dataset == dataset].sort_values("kernel_size")
        share = float(info["between_class_share"].max()) if len(info) else np.nan
        shares = ", ".join(f"{r.between_class_share:.3%} (k = {r.kernel_size})" for r in info.itertuples())
        chance = float(g["chance"].iloc[0]) if "chance" in g else np.nan
        margin = float(g["test_accuracy"].max()) - chance
        accuracies = ", ".join(f"{r.arch} {r.test_accuracy:.3f}" for r in g.itertuples())
        measured = (
            f"label information {shares or 'not measured'}; held-out accuracy of true-label runs (mean over seeds) "
            f"{accuracies}; chance {chance:.3f}"
        )
        holds = (
            None
            if np.isnan(share) or np.isnan(margin)
            else bool(share < LOW_LABEL_INFORMATION and margin >= LEARNED_MARGIN)
        )
        rows.append(_row(name, paper, f"dataset {dataset}", measured, margin, crit, holds))
    return rows


def _accuracy_text(accuracy: pd.DataFrame, dataset: str, arch: str) -> str:
    """'held-out accuracy true …, random-label training accuracy …' of one run family: how far each was trained."""
    acc = accuracy[(accuracy.dataset == dataset) & (accuracy.arch == arch)].set_index("labels")
    parts = []
    if "true" in acc.index:
        parts.append(f"held-out accuracy (true labels) {acc.loc['true', 'test_accuracy']:.3f}")
    if "random" in acc.index:
        parts.append(f"training accuracy (random labels) {acc.loc['random', 'train_accuracy']:.3f}")
    return "; " + ", ".join(parts) if parts else ""


def _label_rows(
    pairs: pd.DataFrame, label_info: pd.DataFrame, matched: pd.DataFrame, accuracy: pd.DataFrame, paper: str
) -> list[dict]:
    rows = []
    lab = pairs[(pairs.kind == "W-W0") & (pairs.relation == "labels")]
    lab_matched = matched[(matched.kind == "W-W0") & (matched.relation == "labels")]
    name = "true vs random labels give the same profile"
    crit = f"mean correlation >= {HIGH}; expected only where labels carry no patch-mean information"
    if lab.empty:
        for c in (crit, f"{crit}, at matched tau"):
            rows.append(_not_run(name, paper, c, "the grid has no true/random pair"))
    for (dataset, arch), g in lab.groupby(["dataset_a", "arch_a"], sort=True):
        info = label_info[label_info.dataset == dataset]
        share = float(info["between_class_share"].iloc[0]) if len(info) else np.nan
        mean = float(g["correlation"].mean())
        measured = (
            f"r = {mean:.3f} ({len(g)} pairs); label information: {share:.2%} of patch variance between "
            f"class means ({'low' if share < LOW_LABEL_INFORMATION else 'high'})"
        ) + _accuracy_text(accuracy, dataset, arch)
        rows.append(_row(name, paper, f"dataset {dataset}, arch {arch}", measured, mean, crit, bool(mean >= HIGH)))
        m = lab_matched[(lab_matched.dataset_a == dataset) & (lab_matched.arch_a == arch)]
        rows.append(_matched_row(name, paper, f"dataset {dataset}, arch {arch}", crit, _pair_stats(m), mean))
    return rows


def _init_rows(summary: pd.DataFrame) -> list[dict]:
    rows = []
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
    rows += tau_growth_rows(one[one.model == "linear"], paper)
    paper = (
        "the formula fits nonlinear CNNs: r ~ 0.96 VGG-11/CIFAR-10, 0.97 VGG-11/CelebA, 0.92 ResNet-18/ImageNet (§3)"
    )
    name = "the formula fits nonlinear CNNs"
    crit = f"median one-parameter r of final W - W0 profiles >= {HIGH}"
    final = one[last_step(one)]
    nonlinear = final[final.model != "linear"]
    if nonlinear.empty:
        rows.append(_not_run(name, paper, crit, "no nonlinear network in the grid"))
    for arch, g in nonlinear.groupby("arch", sort=True):
        med = float(g["correlation"].median())
        a = aware[(aware.arch == arch)]
        a = a[last_step(a)]
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


#: A run's tau growth is judged on at least this many snapshots whose fit is off the tau grid's bound.
MIN_FREE_SNAPSHOTS = 3


def _tau_growth(g: pd.DataFrame) -> tuple[bool, float, bool]:
    """One run's fits -> (tau at the last snapshot above the first, Spearman(step, tau), tau non-decreasing)."""
    tau = g.sort_values("step")["tau"].to_numpy()
    ranks = pd.Series(tau).rank().to_numpy()  # steps are distinct and sorted: their ranks are 0..n-1
    spearman = float(np.corrcoef(np.arange(len(tau)), ranks)[0, 1]) if np.ptp(ranks) > 0 else 0.0
    return bool(tau[-1] > tau[0]), spearman, bool(np.all(np.diff(tau) >= -1e-12 * tau.max()))


def tau_growth_rows(runs: pd.DataFrame, paper: str) -> list[dict]:
    """'tau grows' on the linear CNN runs' one-parameter fits of W - W0: the criterion that decides (snapshots off
    the tau grid's bound), then the original and the first changed criterion, for the record (docs/method.md,
    Replication criteria)."""
    name = "effective time tau grows with training"
    crit = (
        f"on snapshots whose fit is not at the tau grid's bound: tau at the last above tau at the first, and "
        f"Spearman(step, tau) >= 0.7, in every linear CNN run with >= {MIN_FREE_SNAPSHOTS} such snapshots"
    )
    crit_original = "tau non-decreasing over all snapshots in every linear CNN run"
    crit_first = "over all snapshots: tau at the last above the first, and Spearman(step, tau) >= 0.7, in every run"
    record = [(f"{name} (original criterion, for the record)", crit_original),
              (f"{name} (first changed criterion, for the record)", crit_first)]  # fmt: skip
    if runs.empty:
        return [_not_run(n, paper, c, "no linear CNN in the grid") for n, c in [(name, crit), *record]]
    groups = [g for _, g in runs.groupby(RUN_KEYS)]
    everything = [_tau_growth(g) for g in groups]
    free = [g[~g["at_bound"].astype(bool)] for g in groups]
    judged = [_tau_growth(f) for f in free if len(f) >= MIN_FREE_SNAPSHOTS]
    n_free, unjudged = sum(len(f) for f in free), len(groups) - len(judged)
    condition = "linear CNN, W - W0, all runs"
    if judged:
        grows, spearman = [j[0] for j in judged], [j[1] for j in judged]
        measured = (
            f"{n_free} of {len(runs)} snapshots off the bound; Spearman(step, tau) median {np.median(spearman):.2f}"
            f" (min {min(spearman):.2f}); last > first in {sum(grows)}/{len(judged)} runs; {unjudged} runs with "
            f"fewer than {MIN_FREE_SNAPSHOTS} such snapshots not judged"
        )
        holds = all(grows) and min(spearman) >= 0.7
        rows = [_row(name, paper, condition, measured, float(np.median(spearman)), crit, holds)]
    else:
        why = f"no run has {MIN_FREE_SNAPSHOTS} snapshots off the tau grid's bound ({n_free} of {len(runs)})"
        rows = [_not_run(name, paper, crit, why)]
    grows, spearman, mono = ([e[i] for e in everything] for i in range(3))
    rows.append(
        _row(record[0][0], paper, condition, f"tau non-decreasing in {sum(mono)}/{len(mono)} runs",
             sum(mono) / len(mono), crit_original, all(mono))
    )  # fmt: skip
    measured = (
        f"Spearman(step, tau) median {np.median(spearman):.2f} (min {min(spearman):.2f}); last > first in "
        f"{sum(grows)}/{len(grows)} runs"
    )
    rows.append(
        _row(record[1][0], paper, condition, measured, float(np.median(spearman)), crit_first,
             all(grows) and min(spearman) >= 0.7)
    )  # fmt: skip
    return rows


def _whitening_judged(summary: pd.DataFrame) -> pd.Series:
    """Summary rows whose verdict is defined: applicable (tables without the column: assumed) with a run to judge."""
    ok = (summary["n_seeds"] > 0) & summary["fraction_flatter_than_init"].notna()
    if "applicable" in summary:
        ok &= summary["applicable"].astype(bool)
    return ok


def _whitening_reasons(rows: pd.DataFrame) -> str:
    """Why these summary rows are not judged, one entry per dataset and reason."""
    reason = rows["reason"] if "reason" in rows else pd.Series("", index=rows.index)
    reason = reason.where(reason.astype(bool), "no run has both an initial and a final W")
    pairs = dict.fromkeys(zip(rows["dataset"], reason, strict=True))
    return "; ".join(f"dataset {d}: {r}" for d, r in pairs)


def whitening_rows(summary: pd.DataFrame) -> list[dict]:
    """Per architecture: is the final W flatter than W0 in every true- and random-label run; 'not applicable:
    <reason>' (holds None) where the data's span leaves nothing to judge (docs/method.md, Whitening)."""
    paper = "as training goes on the first layer tends to whiten its input patches (§4-5)"
    name = "training makes the response flatter than at init"
    crit = "final W flatter (geometric / arithmetic mean of r_i^2) than W0 in every run"
    learning = summary[summary.labels.isin(["true", "random"])]
    if learning.empty:
        return [_not_run(name, paper, crit, "no trained runs")]
    rows = []
    for arch, g in learning.groupby("arch", sort=True):
        ok = _whitening_judged(g)
        judged, skipped = g[ok], g[~ok]
        if judged.empty:
            measured = f"not applicable: {_whitening_reasons(skipped)}"
            rows.append(_row(name, paper, f"arch {arch}", measured, np.nan, crit, None))
            continue
        frac = float((judged["fraction_flatter_than_init"] * judged["n_seeds"]).sum() / judged["n_seeds"].sum())
        measured = (
            f"flatness data {judged['data'].mean():.3f}, init {judged['init'].mean():.3f}, trained "
            f"{judged['trained'].mean():.3f}; {frac:.0%} of runs flatter than init"
        )
        if "rank" in judged:
            deficient = judged[judged["rank"] < judged["components"]]
            spans = dict.fromkeys(zip(deficient["dataset"], deficient["rank"], deficient["components"], strict=True))
            if spans:
                named = ", ".join(f"dataset {d} rank {r} of {c} components" for d, r, c in spans)
                measured += f" (over the data's span: {named})"
        if not skipped.empty:
            measured += f"; not applicable on {_whitening_reasons(skipped)}"
        rows.append(_row(name, paper, f"arch {arch}", measured, frac, crit, bool(frac == 1.0)))
    return rows


def replication_table(
    summary: pd.DataFrame,
    pairs: pd.DataFrame,
    fits: pd.DataFrame,
    whitening: pd.DataFrame,
    frozen: pd.DataFrame,
    check: pd.DataFrame,
    label_info: pd.DataFrame,
    matched_summary: pd.DataFrame,
    matched: pd.DataFrame,
    accuracy: pd.DataFrame,
) -> pd.DataFrame:
    """Every claim row, from the run's tables (see the module docstring)."""
    rows = [
        *dataset_rows(accuracy, label_info),
        *consistency_rows(summary, pairs, label_info, matched_summary, matched, accuracy),
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
        values = (r.claim, r.paper, r.condition, r.measured, r.criterion, verdict(r.holds))
        out.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(out) + "\n"
