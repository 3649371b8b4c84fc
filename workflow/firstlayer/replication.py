"""The replication table: per claim of the paper, its evidence, this run's measurement, the criterion and whether it
holds, all from the run's tables (docs/method.md, Replication criteria: each criterion and why)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from firstlayer.analysis import HIGH, RUN_KEYS, consistency_summary, last_step, pair_statistics

#: Frozen first layer: "comparable accuracy" means within this many accuracy points of full training.
ACCURACY_MARGIN = 0.05
#: Datasets whose labels carry less than this share of patch variance between class means satisfy the theory's
#: assumption for true = random labels.
LOW_LABEL_INFORMATION = 0.01
#: A dataset's labels count as learned when its best true-label network's held-out accuracy beats chance by this.
LEARNED_MARGIN = 0.15
#: Second-order label information counts as present when it exceeds its shuffled-label null by this many null SDs.
SECOND_ORDER_Z = 3.0
#: A verdict of an agreement row (yes or no) needs at least this many informative pairs (or runs, for a fit row).
MIN_PAIRS = 3
#: The date the agreement criteria took the informativeness rule, intervals and controls; rows under the criteria
#: before it are kept, for the record (docs/method.md, Replication criteria).
CHANGED = "2026-12-03"
#: The matched-tau tolerance before CHANGED (a factor 2), kept for the record rows.
OLD_MATCHED_TAU_TOLERANCE = float(np.log(2.0))

COLUMNS = ["claim", "paper", "condition", "measured", "value", "criterion", "holds", "verdict"]
#: What a row can say: 'yes' and 'no' are decided; the rest are not (holds None).
VERDICTS = ("yes", "no", "undecided", "not informative", "not applicable", "not run")


def verdict(holds: Any) -> str:
    """A row's 'holds' in words: a verdict word as it is; True yes, False no; None or NaN not run."""
    if isinstance(holds, str):
        if holds not in VERDICTS:
            raise ValueError(f"unknown verdict {holds!r}; allowed: {', '.join(VERDICTS)}")
        return holds
    if holds is None or holds is pd.NA or (isinstance(holds, float) and np.isnan(holds)):
        return "not run"
    return "yes" if bool(holds) else "no"


def _row(claim: str, paper: str, condition: str, measured: str, value: float, criterion: str, holds, word=None):
    """One row; ``word`` (a VERDICTS entry) when the verdict is not just ``holds`` in words."""
    word = verdict(holds) if word is None else verdict(word)
    holds = {"yes": True, "no": False}.get(word)
    return dict(zip(COLUMNS, [claim, paper, condition, measured, value, criterion, holds, word], strict=True))


def _not_run(claim: str, paper: str, criterion: str, why: str) -> dict:
    return _row(claim, paper, "(none)", f"not run: {why}", np.nan, criterion, None)


# ------------------------------------------------------------------------ agreement verdicts (docs/method.md,
# When a comparison can say no)


def judge(stats: dict, n_all: int, control: dict | None, threshold: float = HIGH) -> tuple[str, str]:
    """An agreement's verdict and why: ``stats`` of its informative pairs (n, ci_low, ci_high), ``n_all`` pairs in
    all, ``control`` its negative control (n, mean; None where the row has none). 'yes' needs MIN_PAIRS informative
    pairs whose interval clears the threshold and a control that the same threshold calls different; 'no' needs
    MIN_PAIRS and an interval below it; anything else is 'undecided', or 'not informative' without one informative
    pair."""
    n = int(stats.get("n", 0) or 0)
    if n_all == 0:
        return "not run", "no pair"
    if n == 0:
        return "not informative", f"none of {n_all} pairs informative"
    if n < MIN_PAIRS:
        return "undecided", f"{n} informative pair{'s' if n > 1 else ''}, fewer than {MIN_PAIRS}"
    if stats["ci_high"] < threshold:
        return "no", ""
    if stats["ci_low"] < threshold:
        return "undecided", f"interval straddles {threshold}"
    if control is not None:
        if control["n"] == 0:
            return "undecided", "no negative control in these runs"
        if control["mean"] >= threshold:
            return "undecided", "negative control not called different"
    return "yes", ""


def _control(controls: pd.DataFrame, runs: pd.DataFrame) -> dict:
    """The negative controls of the runs named by ``runs`` (RUN_KEYS columns) -> n, mean r, tau ratios."""
    hit = controls.merge(runs.drop_duplicates(), on=RUN_KEYS)
    hit = hit[hit["correlation"].notna()]
    return {"n": len(hit), "mean": float(hit["correlation"].mean()) if len(hit) else np.nan,
            "ratio": float(hit["tau_ratio"].median()) if len(hit) else np.nan}  # fmt: skip


def _runs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The runs on either side of some pairs (RUN_KEYS columns)."""
    sides = [pairs[[f"{k}_{s}" for k in RUN_KEYS]].set_axis(RUN_KEYS, axis=1) for s in "ab"]
    return pd.concat(sides, ignore_index=True).drop_duplicates()


def _control_text(control: dict) -> str:
    if control["n"] == 0:
        return "negative control: none (no run has two informative snapshots 2-3x apart in tau)"
    called = "different" if control["mean"] < HIGH else "the same"
    return (f"negative control (one run's snapshots at tau and ~{control['ratio']:.1f} tau) r = {control['mean']:.3f} "
            f"over {control['n']} runs: called {called}")  # fmt: skip


def _agreement(stats: dict, n_all: int, all_mean: float, null_r: float, control: dict, extra: str = ""):
    """(measured text, value, verdict word) of an agreement row from its informative statistics."""
    word, why = judge(stats, n_all, control)
    n = int(stats.get("n", 0) or 0)
    head = (f"r = {stats['mean']:.3f} [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}] over {n} informative of "
            f"{n_all} pairs" if n else f"no informative pair of {n_all}")  # fmt: skip
    parts = [head, f"all pairs r = {all_mean:.3f}", f"null r = {null_r:.3f}", _control_text(control)]
    if why:
        parts.append(f"{word}: {why}")
    value = float(stats["mean"]) if n else np.nan
    return "; ".join(parts) + extra, value, word


def _stats(row: pd.Series | dict, prefix: str = "informative_") -> dict:
    return {k: row.get(f"{prefix}{k}", np.nan) for k in ("n", "mean", "ci_low", "ci_high")}


def _subset_stats(pairs: pd.DataFrame, analysis: dict) -> dict:
    """Informative-pair statistics of a subset of pairs, as consistency_summary computes them."""
    if pairs.empty:
        return {"n": 0}
    s = consistency_summary(pairs.assign(relation="x", arch_a="x", arch_b="x"), n_boot=analysis["bootstrap"],
                            confidence=analysis["confidence"])  # fmt: skip
    return _stats(s.iloc[0])


def _record_row(name: str, paper: str, condition: str, crit: str, mean: float, n: int, what: str) -> dict:
    """The verdict of the criterion before CHANGED (mean r over all pairs >= HIGH), for the record."""
    measured = f"r = {mean:.3f} ({n} {what})" if n else f"not run: no {what}"
    holds = bool(mean >= HIGH) if n else None
    return _row(f"{name} (criterion before {CHANGED}, for the record)", paper, condition, measured,
                mean if n else np.nan, crit, holds)  # fmt: skip


def _record_matched_row(name: str, paper: str, condition: str, crit: str, mm: pd.DataFrame) -> dict:
    """``_record_row`` at matched tau before CHANGED: the pairs of runs ``mm`` whose nearest snapshots are within
    OLD_MATCHED_TAU_TOLERANCE, whatever their regime."""
    hit = mm[mm["log_tau_distance"].le(OLD_MATCHED_TAU_TOLERANCE)]
    mean = float(hit["correlation"].mean()) if len(hit) else np.nan
    return _record_row(name, paper, f"{condition}, at matched tau", crit, mean, len(hit), "matched pairs")


#: The agreement relations of the replication table: relation -> (claim, plural of what differs).
RELATIONS = {
    "seed": "seeds",
    "architecture": "architectures",
    "init scale": "init scales (one network)",
    "dataset": "datasets",
}


def consistency_rows(
    summary: pd.DataFrame,
    pairs: pd.DataFrame,
    matched: pd.DataFrame,
    controls: pd.DataFrame,
    label_info: pd.DataFrame,
    gaussian: pd.DataFrame,
    accuracy: pd.DataFrame,
    analysis: dict,
) -> tuple[list[dict], list[dict]]:
    """(rows, record rows): seeds, architectures, init scales, datasets and true vs random labels, each at the final
    step and at matched effective time, judged on informative pairs (``judge``); beside them the verdicts of the
    criterion before CHANGED; trained vs init."""
    rows, record = [], []
    paper = "profiles correlate highly across seeds, architectures, datasets and true vs random labels (§3)"
    crit = (f"informative pairs: bootstrap interval of the mean r over seeds >= {HIGH}, at least {MIN_PAIRS} pairs, "
            f"and a negative control r < {HIGH}; interval < {HIGH}: no")  # fmt: skip
    crit_matched = f"{crit}; at matched tau (nearest snapshots off the tau grid's bound, tau within a factor sqrt(2))"
    old = f"mean correlation >= {HIGH}"
    old_matched = f"{old}, at matched tau (nearest snapshots off the tau grid's bound, tau within a factor 2)"
    p = pairs[pairs.kind == "W-W0"]
    m = matched[matched.kind == "W-W0"]
    s = summary[summary.kind == "W-W0"]
    for rel, plural in RELATIONS.items():
        name = f"W - W0 profiles agree across {plural}"
        g = s[s.relation == rel]
        if g.empty:
            for c in (crit, crit_matched):
                rows.append(_not_run(name, paper, c, f"the grid has no pair differing only in {rel}"))
            continue
        for r in g.sort_values("arch").to_dict("records"):
            arch = r["arch"]
            condition = f"{rel} vs {rel}, arch {arch}"
            sel = p[(p.relation == rel) & ((p.arch_a == arch) if arch != "(mixed)" else (p.arch_a != p.arch_b))]
            control = _control(controls, _runs(sel))
            measured, value, word = _agreement(_stats(r), int(r["n"]), float(r["mean"]), float(r["null_r"]), control)
            rows.append(_row(name, paper, condition, measured, value, crit, None, word))
            record.append(_record_row(name, paper, condition, old, float(r["mean"]), int(r["n"]), "pairs"))
            mm = m[(m.relation == rel) & ((m.arch_a == arch) if arch != "(mixed)" else (m.arch_a != m.arch_b))]
            rows.append(_matched_row(name, paper, condition, crit_matched, mm, control, float(r["mean"]), analysis))
            record.append(_record_matched_row(name, paper, condition, old_matched, mm))
    label, label_record = _label_rows(p, m, controls, label_info, gaussian, accuracy, paper, analysis)
    return [*rows, *label, *_init_rows(summary)], [*record, *label_record]


def _matched_row(name, paper, condition, crit, mm: pd.DataFrame, control: dict, final: float, analysis) -> dict:
    """The matched-tau row beside a final-step row: its pairs of runs ``mm`` (matched or not), judged on the matched
    pairs whose two snapshots are both informative."""
    condition = f"{condition}, at matched tau"
    hit = mm[mm["matched"].astype(bool)]
    if mm.empty or hit.empty:
        why = f"no pair of runs at matched tau (0 of {len(mm)} pairs); final step r = {final:.3f}"
        return _row(name, paper, condition, f"not run: {why}", np.nan, crit, None)
    judged = hit[hit["informative"].fillna(False).astype(bool)]
    stats = _subset_stats(judged, analysis)
    distance = float(hit["log_tau_distance"].median())
    extra = f"; {len(hit)} of {len(mm)} pairs matched (median distance in ln tau {distance:.2f})"
    measured, value, word = _agreement(stats, len(hit), float(hit["correlation"].mean()),
                                       float(hit["null_r"].mean()), control, extra)  # fmt: skip
    return _row(name, paper, condition, measured, value, crit, None, word)


def _second_order(gaussian: pd.DataFrame, dataset: str, kernel_size: int | None = None) -> pd.DataFrame:
    g = gaussian[gaussian.dataset == dataset] if len(gaussian) else gaussian
    if kernel_size is not None and len(g):
        g = g[g.kernel_size == kernel_size]
    return g.sort_values("kernel_size") if len(g) else g


def _orders_text(g: pd.DataFrame) -> str:
    """'I1 = … nats (null …), I2 = … (null …, z …)' per kernel size: the Gaussian label information of both orders."""
    return ", ".join(
        f"k = {r.kernel_size}: I1 = {r.first_order:.3g} nats (null {r.first_order_null_mean:.2g}), I2 = "
        f"{r.second_order:.3g} (null {r.second_order_null_mean:.2g}, z = {r.second_order_z:.0f})"
        for r in g.itertuples()
    )


def dataset_rows(accuracy: pd.DataFrame, label_info: pd.DataFrame, gaussian: pd.DataFrame) -> list[dict]:
    """Per dataset with true-label runs: are its labels learned, and do they carry patch-mean information (first
    order: both must hold for the paper's true-vs-random comparison)? And, reported beside it as its own row, do they
    carry class-covariance information (second order), which a ReLU network can use (``accuracy`` has ``chance``)."""
    paper = "true and random labels are compared on a task the networks learn (CIFAR-10 test accuracy ~90%) (§3)"
    name = "the dataset's labels are learned and carry no patch-mean information"
    crit = (
        f"label information < {LOW_LABEL_INFORMATION:.0%} at every kernel size measured, and the best true-label "
        f"network's held-out accuracy >= chance + {LEARNED_MARGIN:.2f}"
    )
    name2 = "the dataset's labels carry no class-covariance information (second order)"
    paper2 = "the linear theory needs labels independent of the patches' first moments; ReLU networks can use more (§4)"
    crit2 = (f"Gaussian second-order label information I2 within {SECOND_ORDER_Z:g} SDs of its shuffled-label null "
             "at every kernel size measured")  # fmt: skip
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
        orders = _second_order(gaussian, dataset)
        measured = (
            f"label information {shares or 'not measured'}; held-out accuracy of true-label runs (mean over seeds) "
            f"{accuracies}; chance {chance:.3f}"
        ) + (f"; Gaussian label information {_orders_text(orders)}" if len(orders) else "")
        holds = (
            None
            if np.isnan(share) or np.isnan(margin)
            else bool(share < LOW_LABEL_INFORMATION and margin >= LEARNED_MARGIN)
        )
        rows.append(_row(name, paper, f"dataset {dataset}", measured, margin, crit, holds))
        if len(orders):
            z = float(orders["second_order_z"].max())
            rows.append(_row(name2, paper2, f"dataset {dataset}", _orders_text(orders), z, crit2,
                             bool(z < SECOND_ORDER_Z)))  # fmt: skip
        else:
            rows.append(_not_run(name2, paper2, crit2, f"no Gaussian label information of dataset {dataset}"))
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
    pairs: pd.DataFrame,
    matched: pd.DataFrame,
    controls: pd.DataFrame,
    label_info: pd.DataFrame,
    gaussian: pd.DataFrame,
    accuracy: pd.DataFrame,
    paper: str,
    analysis: dict,
) -> tuple[list[dict], list[dict]]:
    rows, record = [], []
    lab = pairs[pairs.relation == "labels"]
    lab_matched = matched[matched.relation == "labels"]
    name = "true vs random labels give the same profile"
    crit = (f"informative pairs: bootstrap interval of the mean r over seeds >= {HIGH}, at least {MIN_PAIRS} pairs, "
            f"and a negative control r < {HIGH}; interval < {HIGH}: no; expected only where labels carry no "
            "patch-mean information")  # fmt: skip
    crit_matched = f"{crit}; at matched tau (tau within a factor sqrt(2))"
    old = f"mean correlation >= {HIGH}; expected only where labels carry no patch-mean information"
    old_matched = f"{old}, at matched tau (nearest snapshots off the tau grid's bound, tau within a factor 2)"
    if lab.empty:
        for c in (crit, crit_matched):
            rows.append(_not_run(name, paper, c, "the grid has no true/random pair"))
    for (dataset, arch), g in lab.groupby(["dataset_a", "arch_a"], sort=True):
        info = label_info[label_info.dataset == dataset]
        share = float(info["between_class_share"].iloc[0]) if len(info) else np.nan
        orders = _second_order(gaussian, dataset, int(g["kernel_size"].iloc[0]))
        extra = (
            f"; label information: {share:.2%} of patch variance between class means "
            f"({'low' if share < LOW_LABEL_INFORMATION else 'high'})"
            + (f", Gaussian {_orders_text(orders)}" if len(orders) else "")
            + _accuracy_text(accuracy, dataset, arch)
        )
        control = _control(controls, _runs(g))
        judged = g[g["informative"].fillna(False).astype(bool)]
        mean = float(g["correlation"].mean())
        measured, value, word = _agreement(_subset_stats(judged, analysis), len(g), mean,
                                           float(g["null_r"].mean()), control, extra)  # fmt: skip
        condition = f"dataset {dataset}, arch {arch}"
        rows.append(_row(name, paper, condition, measured, value, crit, None, word))
        record.append(_record_row(name, paper, condition, old, mean, len(g), "pairs"))
        mm = lab_matched[(lab_matched.dataset_a == dataset) & (lab_matched.arch_a == arch)]
        rows.append(_matched_row(name, paper, condition, crit_matched, mm, control, mean, analysis))
        record.append(_record_matched_row(name, paper, condition, old_matched, mm))
    return rows, record


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


def theory_rows(
    check: pd.DataFrame,
    fits: pd.DataFrame,
    label_info: pd.DataFrame,
    regimes: pd.DataFrame,
    nulls: pd.DataFrame,
    analysis: dict,
) -> tuple[list[dict], list[dict]]:
    """(rows, record rows): the exact linear check, the formula's fits to the linear CNN (every snapshot) and to the
    nonlinear networks (final step), judged on informative profiles, and tau's growth."""
    rows, record = [], []
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
    crit = ("informative snapshots: bootstrap interval of the mean one-parameter r over seeds >= 0.95, at least "
            f"{MIN_PAIRS} snapshots; on datasets whose labels carry no patch-mean information")  # fmt: skip
    old = "median one-parameter r >= 0.95 over snapshots, on datasets whose labels carry no patch-mean information"
    lin = one[(one.model == "linear") & one.dataset.isin(low)]
    if lin.empty:
        rows.append(_not_run(name, paper, crit, "no linear CNN trained on a dataset with low label information"))
    for (dataset, labels), g in lin.groupby(["dataset", "labels"], sort=True):
        a = aware[(aware.model == "linear") & (aware.dataset == dataset) & (aware.labels == labels)]
        med = float(g["correlation"].median())
        condition = f"linear CNN, dataset {dataset}, {labels} labels, W - W0"
        measured, value, word = _fit_agreement(g, regimes, nulls, analysis, 0.95, "snapshots")
        measured += f"; init-aware median {a['correlation'].median():.3f}"
        rows.append(_row(name, paper, condition, measured, value, crit, None, word))
        record.append(_row(f"{name} (criterion before {CHANGED}, for the record)", paper, condition,
                           f"one-parameter r median {med:.3f} (min {g['correlation'].min():.3f}, {len(g)} snapshots)",
                           med, old, bool(med >= 0.95)))  # fmt: skip
    rows += tau_growth_rows(one[one.model == "linear"], paper)
    paper = (
        "the formula fits nonlinear CNNs: r ~ 0.96 VGG-11/CIFAR-10, 0.97 VGG-11/CelebA, 0.92 ResNet-18/ImageNet (§3)"
    )
    name = "the formula fits nonlinear CNNs"
    crit = (f"informative final W - W0 profiles: bootstrap interval of the mean one-parameter r over seeds >= {HIGH}, "
            f"at least {MIN_PAIRS} runs; interval < {HIGH}: no")  # fmt: skip
    old = f"median one-parameter r of final W - W0 profiles >= {HIGH}"
    final = one[last_step(one)]
    nonlinear = final[final.model != "linear"]
    if nonlinear.empty:
        rows.append(_not_run(name, paper, crit, "no nonlinear network in the grid"))
    for arch, g in nonlinear.groupby("arch", sort=True):
        med = float(g["correlation"].median())
        a = aware[(aware.arch == arch)]
        a = a[last_step(a)]
        condition = f"arch {arch}, final W - W0, {len(g)} runs"
        measured, value, word = _fit_agreement(g, regimes, nulls, analysis, HIGH, "runs")
        measured += f"; median over all runs {med:.3f}, init-aware {a['correlation'].median():.3f}"
        rows.append(_row(name, paper, condition, measured, value, crit, None, word))
        record.append(_row(f"{name} (criterion before {CHANGED}, for the record)", paper, condition,
                           f"one-parameter r median {med:.3f}", med, old, bool(med >= HIGH)))  # fmt: skip
    return rows, record


def _fit_agreement(g: pd.DataFrame, regimes: pd.DataFrame, nulls: pd.DataFrame, analysis: dict, threshold: float,
                   what: str) -> tuple[str, float, str]:  # fmt: skip
    """(measured, value, verdict) of a fit row: its fits ``g`` (one per run and step) judged on the informative
    profiles, with the formula's fit r on untrained random banks of the same widths beside it (the null)."""
    keys = [*RUN_KEYS, "step"]
    reg = g.drop(columns="filters", errors="ignore").merge(regimes[[*keys, "regime", "filters"]], on=keys, how="left")
    judged = reg[reg["regime"] == "informative"]
    null = reg.merge(nulls, on=["dataset", "kernel_size", "filters"], how="left")["null_fit_r_median"].mean()
    stats: dict = {"n": 0}
    if len(judged):  # one run is a pair of a seed with itself: its weight is its seed's count in a resample
        runs = judged.assign(seed_a=judged["seed"], seed_b=judged["seed"])
        stats = pair_statistics(runs, analysis["bootstrap"], analysis["confidence"], np.random.default_rng(0))
    word, why = judge(stats, len(g), None, threshold)
    n = stats["n"]
    head = (f"r = {stats['mean']:.3f} [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}] over {n} informative of "
            f"{len(g)} {what}" if n else f"no informative profile of {len(g)} {what}")  # fmt: skip
    regimes_text = ", ".join(f"{k} {v}" for k, v in reg["regime"].value_counts().sort_index().items())
    parts = [head, f"regimes: {regimes_text}", f"null r (untrained random banks) = {null:.3f}"]
    if why:
        parts.append(f"{word}: {why.replace('pairs', what).replace('pair', what.rstrip('s'))}")
    return "; ".join(parts), float(stats["mean"]) if n else np.nan, word


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
            rows.append(_row(name, paper, f"arch {arch}", measured, np.nan, crit, None, "not applicable"))
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
    matched: pd.DataFrame,
    accuracy: pd.DataFrame,
    regimes: pd.DataFrame,
    nulls: pd.DataFrame,
    controls: pd.DataFrame,
    gaussian: pd.DataFrame,
    analysis: dict,
) -> pd.DataFrame:
    """Every claim row, from the run's tables (see the module docstring); the rows of changed criteria last."""
    agreement, agreement_record = consistency_rows(summary, pairs, matched, controls, label_info, gaussian, accuracy,
                                                   analysis)  # fmt: skip
    theory, theory_record = theory_rows(check, fits, label_info, regimes, nulls, analysis)
    rows = [
        *dataset_rows(accuracy, label_info, gaussian),
        *agreement,
        *frozen_rows(frozen),
        *theory,
        *whitening_rows(whitening),
        *agreement_record,
        *theory_record,
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown (holds: the verdict in words, ``VERDICTS``)."""

    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    words = table["verdict"] if "verdict" in table else table["holds"]
    out = ["| claim | paper | condition | measured | criterion | holds |", "|---|---|---|---|---|---|"]
    for r, word in zip(table.itertuples(), words, strict=True):
        values = (r.claim, r.paper, r.condition, r.measured, r.criterion, verdict(word))
        out.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(out) + "\n"
