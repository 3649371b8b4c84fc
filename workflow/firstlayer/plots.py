"""Figures (seaborn), drawn from tidy tables only."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from firstlayer.analysis import RUN_KEYS
from firstlayer.theory import formula_profile

LABEL_NAMES = {"true": "true labels", "random": "random labels"}


def normalised_profiles(energy: pd.DataFrame) -> pd.DataFrame:
    """Add `normalised_energy`: each profile (run, step, kind) divided by its maximum."""
    peak = energy.groupby([*RUN_KEYS, "step", "kind"])["energy"].transform("max")
    return energy.assign(normalised_energy=energy["energy"] / peak)


def final_and_init(energy: pd.DataFrame, kind: str = "W-W0") -> pd.DataFrame:
    """Rows of each run's last snapshot of `kind`, plus its init profile (W at step 0) as condition 'init'."""
    energy = normalised_profiles(energy)
    last = energy.groupby(RUN_KEYS)["step"].transform("max")
    final = energy[(energy.kind == kind) & (energy.step == last)].assign(
        condition=lambda d: d["labels"].map(LABEL_NAMES)
    )
    init = energy[(energy.kind == "W") & (energy.step == 0)].assign(condition="initialisation (W0)")
    return pd.concat([final, init], ignore_index=True)


def plot_profiles(energy: pd.DataFrame, *, kind: str = "W-W0", log_x: bool = True) -> plt.Figure:
    """Energy profiles by condition: one panel per dataset and architecture, seeds as a band, init dashed."""
    data = final_and_init(energy, kind)
    data["panel"] = data["dataset"] + " / " + data["arch"]
    grid = sns.relplot(
        data=data,
        x="component",
        y="normalised_energy",
        hue="condition",
        style="condition",
        dashes={"true labels": "", "random labels": "", "initialisation (W0)": (4, 2)},
        col="panel",
        col_order=sorted(data["panel"].unique()),
        col_wrap=min(3, data["panel"].nunique()),
        kind="line",
        errorbar=("pi", 100),
        height=2.8,
        aspect=1.3,
        facet_kws={"sharex": False},
    )
    grid.set_axis_labels("PCA component (by decreasing variance)", "energy / max")
    grid.set_titles(col_template="{col_name}")
    if log_x:
        for ax in grid.axes.flat:
            ax.set_xscale("log")
    grid.figure.suptitle(f"First-layer energy profiles of {kind} (band: range over seeds)", y=1.02)
    return grid.figure


def plot_fit_overlay(energy: pd.DataFrame, fits: pd.DataFrame, *, kind: str = "W-W0") -> plt.Figure:
    """Measured final profiles (mean over seeds) against the formula at the fitted tau, one panel per
    dataset x architecture (true labels)."""
    data = normalised_profiles(energy)
    last = data.groupby(RUN_KEYS)["step"].transform("max")
    data = data[(data.kind == kind) & (data.step == last) & (data.labels == "true")]
    panels = data[["dataset", "arch"]].drop_duplicates().sort_values(["dataset", "arch"]).to_numpy()
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    for ax, (dataset, arch) in zip(axes.flat, panels, strict=False):
        sub = data[(data.dataset == dataset) & (data.arch == arch)]
        mean = sub.groupby("component").agg(energy=("normalised_energy", "mean"), eigenvalue=("eigenvalue", "first"))
        f = fits[(fits.dataset == dataset) & (fits.arch == arch) & (fits.kind == kind) & (fits.labels == "true")]
        f = f[f.step == f.step.max()]
        tau = float(np.exp(np.log(f["tau"]).mean()))
        model = formula_profile(mean["eigenvalue"].to_numpy(), tau)
        ax.plot(mean.index, mean["energy"], "o-", ms=3, label="measured (mean over seeds)")
        ax.plot(mean.index, model / model.max(), "--", label=f"formula, tau = {tau:.3g}")
        ax.set_xscale("log")
        ax.set_title(f"{dataset} / {arch}: r = {f['correlation'].mean():.3f}", fontsize=10)
        ax.set_xlabel("PCA component")
        ax.set_ylabel("energy / max")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"Linear-systems formula fitted to final {kind} profiles (true labels)")
    fig.tight_layout()
    return fig


def run_label(row: pd.Series, suffix: str) -> str:
    return f"{row['dataset' + suffix]}/{row['arch' + suffix]}/{row['labels' + suffix]}/s{row['seed' + suffix]}"


def plot_consistency(pairs: pd.DataFrame, *, kind: str = "W-W0") -> plt.Figure:
    """Heatmap of pairwise correlations of final profiles, runs ordered by dataset, architecture, labels, seed."""
    pairs = pairs[(pairs.kind == kind) & (pairs.relation != "trained vs init")]
    a = pairs.apply(run_label, axis=1, suffix="_a")
    b = pairs.apply(run_label, axis=1, suffix="_b")
    names = sorted(set(a) | set(b))
    matrix = pd.DataFrame(np.nan, index=names, columns=names)  # NaN: not comparable (other kernel size)
    for x in names:
        matrix.loc[x, x] = 1.0
    for x, y, r in zip(a, b, pairs["correlation"], strict=True):
        matrix.loc[x, y] = matrix.loc[y, x] = r
    size = max(5.0, 0.42 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(
        matrix,
        ax=ax,
        vmin=-1,
        vmax=1,
        cmap="vlag",
        annot=len(names) <= 24,
        fmt=".2f",
        annot_kws={"fontsize": 6},
        square=True,
        cbar_kws={"label": "Pearson correlation of profiles"},
    )
    ax.set_title(f"Consistency of final {kind} energy profiles (dataset/arch/labels/seed)")
    return fig
