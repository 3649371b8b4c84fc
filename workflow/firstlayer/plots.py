"""Figures, drawn from tidy tables only (matplotlib with the Agg backend, seaborn styles): ``plot_<figure>`` for each
figure of the report (FIGURES in workflow/rules/figures.smk), taking its tables by name and returning a Figure. The
report's HTML pages are in firstlayer.report.

Every function accepts whatever the grid produced: one or many datasets and architectures, 27/75/147 components,
one or several seeds, runs with a frozen first layer or none."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from firstlayer.analysis import LEARNING_MODES, MATCHED_TAU_TOLERANCE, RUN_KEYS, last_step
from firstlayer.energy import snapshot_arrays
from firstlayer.io import pca_basis
from firstlayer.theory import formula_profile, init_aware_profile

#: Label modes in the order they are drawn, and their names in words.
LABEL_ORDER = ("true", "random", "frozen")
LABEL_NAMES = {"true": "true labels", "random": "random labels", "frozen": "first layer frozen at init"}
LABEL_COLOURS = {"true": "#1f77b4", "random": "#ff7f0e", "frozen": "#2ca02c"}
INIT_NAME = "initialisation $W_0$ (step 0)"
INIT_COLOUR = "#444444"
KIND_NAMES = {"W": "trained weights $W$", "W-W0": "change from init $W - W_0$"}
ENERGY_LABEL = r"normalised energy $e_i\,/\,e_{\max}$"
COMPONENT_LABEL = r"PCA component $i$ (by decreasing eigenvalue $\lambda_i$)"
FORMULA_NAME = r"formula $(1 - e^{-\tau\lambda_i})/\sqrt{\lambda_i}$"
#: Filter and PCA-basis mosaics show at most this many tiles.
MAX_TILES = 64
#: Consistency heatmaps write the correlation into each cell up to this many runs.
MAX_ANNOTATED_RUNS = 24
RC = {
    "figure.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8.5,
    "figure.titlesize": 11,
    "svg.hashsalt": "firstlayer",  # stable element ids: the same table gives the same SVG
}


def _styled(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw inside the house style (seaborn 'ticks' with a light grid, RC sizes), without touching global state."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with sns.axes_style("ticks", {"axes.grid": True, "grid.color": "#e6e6e6"}), plt.rc_context(RC):
            return plot(*args, **kwargs)

    return wrapper


def render_figure(fig: Figure, fmt: str) -> bytes:
    """A figure as PNG or SVG bytes (no creation date: the same figure gives the same file)."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"figure format {fmt!r} is not supported; use png or svg")
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": "firstlayer (matplotlib)"}
    with plt.rc_context(RC):
        fig.savefig(buffer, format=fmt, dpi=110, bbox_inches="tight", metadata=metadata)
    return buffer.getvalue()


# ------------------------------------------------------------------------ helpers


def _panel_axes(n: int, *, ncols: int = 3, width: float = 3.9, height: float = 3.0, **kwargs: Any):
    """A figure with n panels wrapped in rows of at most ``ncols``: (figure, panels, unused cells, hidden)."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[:n]):
        if kwargs.get("sharey") and i % ncols:
            ax.tick_params(labelleft=False)  # shared y: ticks are labelled in the first column only
    return fig, list(axes.flat[:n]), list(axes.flat[n:])


def _legend(fig: Figure, handles: list, spare: Sequence[plt.Axes] = ()) -> None:
    """One legend for the whole figure: in an unused panel cell when there is one, else centred below the panels
    (never over data)."""
    if spare:
        ax = spare[0]
        ax.set_visible(True)
        ax.axis("off")
        ax.legend(handles=handles, loc="center", frameon=False, fontsize=9)
    else:
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 4),
                   frameon=False)  # fmt: skip


def _finish(fig: Figure, title: str, handles: Sequence = (), spare: Sequence[plt.Axes] = ()) -> Figure:
    """Legend, layout and title: the panels are laid out below a band kept for the title (tight_layout alone lets a
    two-line title run into the first row of a tall figure); y labels only in the first column of shared-y rows."""
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None and not spec.is_first_col() and ax.get_shared_y_axes().get_siblings(ax) != [ax]:
            ax.set_ylabel("")
    if handles:
        _legend(fig, list(handles), spare)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.25 + 0.2 * (title.count("\n") + 1)) / height))
    fig.suptitle(title, y=1 - 0.1 / height, va="top")
    return fig


def _plain_log_ticks(axis: Any) -> None:
    """A log axis labelled 1, 10, 100 (and 2, 5 between them when it spans few decades) rather than 10^k."""
    low, high = sorted(np.abs(axis.get_view_interval()))
    few_decades = high / max(low, 1e-300) < 300
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if few_decades else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    """Distinct values, those named in ``order`` first in that order, then the rest sorted."""
    distinct = list(dict.fromkeys(values))
    return [v for v in order if v in distinct] + sorted(v for v in distinct if v not in order)


def _label_name(labels: str) -> str:
    return LABEL_NAMES.get(labels, f"{labels} labels")


def _label_colour(labels: str) -> str:
    return LABEL_COLOURS.get(labels, "#9467bd")


def _normalised(energy: pd.DataFrame) -> pd.DataFrame:
    """Add `normalised_energy`: each profile (run, step, kind) divided by its maximum (NaN for an all-zero one)."""
    peak = energy.groupby([*RUN_KEYS, "step", "kind"])["energy"].transform("max")
    return energy.assign(normalised_energy=energy["energy"] / peak.where(peak > 0))


def _band(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per component: mean, min and max of ``value`` over seeds, and the eigenvalue."""
    return frame.groupby("component").agg(
        mean=(value, "mean"), low=(value, "min"), high=(value, "max"), eigenvalue=("eigenvalue", "first")
    )


def _family_title(dataset: str, arch: str, kernel_size: int | None = None, components: int | None = None) -> str:
    title = f"{dataset} / {arch}"
    if kernel_size is not None and components is not None:
        title += f"\n{kernel_size}×{kernel_size} filters, {components} components"
    return title


def _empty_figure(message: str) -> Figure:
    """A one-panel figure that says what is missing (a grid without the experiment still gets its figure)."""
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def _scaled(model: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``model`` times the least-squares scale that matches it to ``target`` (shapes are compared, not sizes)."""
    ok = np.isfinite(target)
    denominator = float(model[ok] @ model[ok])
    return model * (float(model[ok] @ target[ok]) / denominator if denominator > 0 else 1.0)


def _geometric_mean(values: pd.Series) -> float:
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.exp(np.log(values).mean())) if len(values) else float("nan")


# ------------------------------------------------------------------------ 1. energy profiles by condition


@_styled
def plot_profiles(energy: pd.DataFrame, *, kind: str = "W-W0", log_x: bool = True) -> Figure:
    """Final energy profiles of ``kind`` by label condition (mean over seeds, band: min–max over seeds) with the
    initial profile dashed, one panel per dataset and architecture. Frozen runs appear for kind W only (their
    W − W0 is zero)."""
    data = _normalised(energy)
    final = data[(data["kind"] == kind) & last_step(data) & data["normalised_energy"].notna()]
    init = data[(data["kind"] == "W") & (data["step"] == 0)]
    families = sorted(data[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))
    if not families:
        return _empty_figure("no energy profiles in this run")
    fig, axes, spare = _panel_axes(len(families), sharey=True)
    conditions = _ordered(final["labels"], LABEL_ORDER)
    for ax, (dataset, arch) in zip(axes, families, strict=True):
        here = (data["dataset"] == dataset) & (data["arch"] == arch)
        curves = [(_label_name(lab), _label_colour(lab), "-", final[here.loc[final.index] & (final["labels"] == lab)])
                  for lab in conditions]  # fmt: skip
        curves.append((INIT_NAME, INIT_COLOUR, "--", init[here.loc[init.index]]))
        for name, colour, style, rows in curves:
            if rows.empty:
                continue
            band = _band(rows, "normalised_energy")
            ax.plot(band.index, band["mean"], style, color=colour, lw=1.6, label=name)
            ax.fill_between(band.index, band["low"], band["high"], color=colour, alpha=0.2, lw=0)
        sub = data[here]
        ax.set_title(_family_title(dataset, arch, int(sub["kernel_size"].iloc[0]), int(sub["component"].max())))
        if log_x:
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis)
        ax.set_xlabel(COMPONENT_LABEL)
        ax.set_ylabel(ENERGY_LABEL)
        ax.set_ylim(0, 1.05)
    handles = [Line2D([], [], color=_label_colour(lab), lw=1.6, label=_label_name(lab)) for lab in conditions]
    handles.append(Line2D([], [], color=INIT_COLOUR, ls="--", lw=1.6, label=INIT_NAME))
    title = (f"First-layer energy profiles of the {KIND_NAMES.get(kind, kind)} at the last step\n"
             "(line: mean over seeds, band: min–max over seeds)")  # fmt: skip
    return _finish(fig, title, handles, spare)


# ------------------------------------------------------------------------ 2. formula fit overlay


@_styled
def plot_fit_overlay(energy: pd.DataFrame, fits: pd.DataFrame, *, kind: str = "W-W0") -> Figure:
    """Measured final profiles of ``kind`` (mean over seeds, band: min–max) against the one-parameter formula and
    the init-aware formula at the fitted τ (geometric mean over seeds), one panel per run family (dataset,
    architecture, labels that learn); τ and the fit's correlation in each title."""
    data = _normalised(energy)
    data = data[(data["kind"] == kind) & last_step(data) & data["labels"].isin(LEARNING_MODES)]
    fits = fits[(fits["kind"] == kind) & fits["labels"].isin(LEARNING_MODES)]
    fits = fits[last_step(fits)]
    families = sorted(
        data[["dataset", "arch", "labels"]].drop_duplicates().itertuples(index=False, name=None),
        key=lambda f: (f[0], f[1], LABEL_ORDER.index(f[2]) if f[2] in LABEL_ORDER else 9),
    )
    if not families:
        return _empty_figure(f"no trained {kind} profiles to fit in this run")
    ncols = 4 if len(families) > 9 else 3
    fig, axes, spare = _panel_axes(len(families), ncols=ncols, width=3.9, height=3.3, sharey=True)
    for ax, (dataset, arch, labels) in zip(axes, families, strict=True):
        rows = data[(data["dataset"] == dataset) & (data["arch"] == arch) & (data["labels"] == labels)]
        band = _band(rows, "normalised_energy")
        lam = band["eigenvalue"].to_numpy()
        ax.fill_between(band.index, band["low"], band["high"], color=_label_colour(labels), alpha=0.2, lw=0)
        ax.plot(band.index, band["mean"], "o-", ms=2.5, lw=1.2, color=_label_colour(labels))
        family = fits[(fits["dataset"] == dataset) & (fits["arch"] == arch) & (fits["labels"] == labels)]
        title = [f"{dataset} / {arch}, {_label_name(labels)}"]
        for formula, style, colour in (("one_parameter", "--", "black"), ("init_aware", ":", "#d62728")):
            f = family[family["formula"] == formula]
            if f.empty:
                continue
            tau = _geometric_mean(f["tau"])
            if formula == "one_parameter":
                model = formula_profile(lam, tau)
                title.append(f"τ = {tau:.3g}, r = {f['correlation'].mean():.3f}")
            else:
                beta = float(f["beta"].mean())
                model = init_aware_profile(lam, np.array([tau]), np.array([beta]), kind)[0]
                title[-1] += f"; init-aware r = {f['correlation'].mean():.3f}"
            ax.plot(band.index, _scaled(model, band["mean"].to_numpy()), style, color=colour, lw=1.5)
        ax.set_title("\n".join(title))
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel(COMPONENT_LABEL)
        ax.set_ylabel(ENERGY_LABEL)
    conditions = _ordered([f[2] for f in families], LABEL_ORDER)
    handles = [Line2D([], [], color=_label_colour(lab), marker="o", ms=3, lw=1.2, label=f"measured, {_label_name(lab)}")
               for lab in conditions]  # fmt: skip
    handles += [
        Line2D([], [], color="black", ls="--", lw=1.5, label=FORMULA_NAME),
        Line2D([], [], color="#d62728", ls=":", lw=1.5, label=r"init-aware formula ($\tau$, $\beta$)"),
    ]
    title = (
        f"Linear-systems formula fitted to the final {KIND_NAMES.get(kind, kind)}\n(τ: geometric mean over seeds, "
        "r: mean correlation of the per-seed fits; formulas scaled by least squares)"
    )
    return _finish(fig, title, handles, spare)


# ------------------------------------------------------------------------ 3. consistency heatmap


def _run_name(dataset: str, arch: str, labels: str, seed: Any) -> str:
    return f"{dataset} · {arch} · {_label_name(labels)} · seed {seed}"


@_styled
def plot_consistency(pairs: pd.DataFrame, *, kind: str = "W-W0") -> Figure:
    """Heatmap of the Pearson correlations of every pair of final ``kind`` profiles, runs ordered by dataset,
    architecture, labels and seed, with lines between dataset/architecture groups; grey: not comparable (different
    kernel sizes)."""
    pairs = pairs[(pairs["kind"] == kind) & (pairs["relation"] != "trained vs init")]
    if pairs.empty:
        return _empty_figure(f"no pair of final {kind} profiles to compare in this run")
    runs = pd.concat(
        [pairs[[f"{k}_{side}" for k in RUN_KEYS]].set_axis(RUN_KEYS, axis=1) for side in ("a", "b")]
    ).drop_duplicates()
    runs["label_rank"] = runs["labels"].map(lambda v: LABEL_ORDER.index(v) if v in LABEL_ORDER else 9)
    runs = runs.sort_values(["dataset", "arch", "label_rank", "labels", "seed"]).reset_index(drop=True)
    names = [_run_name(*r) for r in runs[RUN_KEYS].itertuples(index=False, name=None)]
    index = {tuple(r): i for i, r in enumerate(runs[RUN_KEYS].itertuples(index=False, name=None))}
    n = len(names)
    matrix = np.full((n, n), np.nan)
    np.fill_diagonal(matrix, 1.0)
    for row in pairs.itertuples(index=False):
        i = index[(row.dataset_a, row.arch_a, row.labels_a, row.seed_a)]
        j = index[(row.dataset_b, row.arch_b, row.labels_b, row.seed_b)]
        matrix[i, j] = matrix[j, i] = row.correlation
    low = float(np.floor(min(np.nanmin(matrix), 0.9) * 10) / 10)
    cell = 0.34 if n <= MAX_ANNOTATED_RUNS else max(0.12, 8.0 / n)
    side = min(18.0, max(4.0, cell * n))
    fig, ax = plt.subplots(figsize=(side + 4.2, side + 2.6))
    ax.set_facecolor("#d9d9d9")
    sns.heatmap(
        pd.DataFrame(matrix, index=names, columns=names),
        ax=ax,
        vmin=max(low, -1.0),
        vmax=1.0,
        cmap="viridis",
        annot=n <= MAX_ANNOTATED_RUNS,
        fmt=".2f",
        annot_kws={"fontsize": 6.5 if n > 14 else 8},
        square=True,
        linewidths=0,
        cbar_kws={"label": "Pearson correlation of the two profiles", "shrink": 0.6},
        xticklabels=True,
        yticklabels=True,
    )
    ax.grid(False)
    tick_size = 8 if n <= MAX_ANNOTATED_RUNS else max(4.0, 8 - n / 20)
    ax.tick_params(labelsize=tick_size, length=0)
    groups = runs["dataset"] + "/" + runs["arch"]
    for edge in np.flatnonzero(groups.to_numpy()[1:] != groups.to_numpy()[:-1]) + 1:
        ax.axhline(edge, color="white", lw=1.5)
        ax.axvline(edge, color="white", lw=1.5)
    ax.set_xlabel("run (dataset · architecture · labels · seed)")
    ax.set_ylabel("run (dataset · architecture · labels · seed)")
    ax.set_title(
        f"Consistency of the final {KIND_NAMES.get(kind, kind)} energy profiles across runs\n"
        "(white lines separate dataset/architecture groups; grey: different kernel sizes, not comparable)"
    )
    return fig


# ------------------------------------------------------------------------ 4. the filters and the PCA basis


def filter_tiles(bank: np.ndarray, kernel_size: int) -> np.ndarray:
    """(K, d) filters in conv.weight.flatten(1) order (channel, row, column) -> (K, k, k, 3) RGB tiles in [0, 1],
    each contrast-normalised on its own (0 maps to grey, the largest |weight| to black or full colour).
    Banks of other than 3 channels are shown in grey levels of their mean over channels."""
    bank = np.asarray(bank, dtype=np.float64)
    count, d = bank.shape
    channels = d // (kernel_size * kernel_size)
    if channels * kernel_size * kernel_size != d:
        raise ValueError(f"filters of dimension {d} are not c×{kernel_size}×{kernel_size}")
    tiles = bank.reshape(count, channels, kernel_size, kernel_size).transpose(0, 2, 3, 1)
    if channels != 3:
        tiles = np.repeat(tiles.mean(axis=3, keepdims=True), 3, axis=3)
    scale = np.abs(tiles).max(axis=(1, 2, 3), keepdims=True)
    return 0.5 + 0.5 * tiles / np.where(scale > 0, scale, 1.0)


def tile_mosaic(tiles: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """(n, k, k, 3) tiles -> one (rows·(k+gap)+gap, columns·(k+gap)+gap, 3) image, white between tiles, row-major."""
    n, k = tiles.shape[0], tiles.shape[1]
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    out = np.ones((rows * (k + gap) + gap, columns * (k + gap) + gap, 3))
    for t in range(n):
        r, c = divmod(t, columns)
        out[gap + r * (k + gap) : gap + r * (k + gap) + k, gap + c * (k + gap) : gap + c * (k + gap) + k] = tiles[t]
    return out


def first_seed_ends(snapshots: pd.DataFrame) -> pd.DataFrame:
    """The snapshot rows the filter figure draws: each run family's first seed, at step 0 and at its last step."""
    family = ["dataset", "arch", "labels"]
    first = snapshots["seed"] == snapshots.groupby(family)["seed"].transform("min")
    rows = snapshots[first]
    return rows[rows["step"].eq(0) | rows["step"].eq(rows.groupby(family)["step"].transform("max"))]


@_styled
def plot_filters(snapshots: pd.DataFrame, pca: pd.DataFrame) -> Figure:
    """For the first seed of each run family in ``snapshots`` (rows: dataset, arch, labels, seed, step, filter,
    position, weight): its first-layer filters at initialisation, at the last snapshot and their change W - W0 as
    RGB tiles (the change shows what was learned when the init still dominates W), and the PCA basis u_i of its
    dataset (``pca`` rows: dataset, kernel_size, component, eigenvalue, eigenvector) drawn as k×k×3 patches in
    order of decreasing eigenvalue. At most 64 tiles per panel."""
    snapshots = first_seed_ends(snapshots)
    runs = snapshots[RUN_KEYS].drop_duplicates().sort_values(["arch", "dataset", "labels", "seed"])
    if runs.empty:
        return _empty_figure("no first-layer snapshots in this run")
    fig, axes = plt.subplots(len(runs), 4, figsize=(13.0, 3.4 * len(runs)), squeeze=False)
    for row, (dataset, arch, labels, seed) in zip(axes, runs.itertuples(index=False, name=None), strict=True):
        rows = snapshots[(snapshots["dataset"] == dataset) & (snapshots["arch"] == arch)
                         & (snapshots["labels"] == labels) & (snapshots["seed"] == seed)]  # fmt: skip
        banks = snapshot_arrays(rows)
        last = max(banks)
        basis_rows = pca[pca["dataset"] == dataset]
        d = banks[0].shape[1]
        basis_rows = basis_rows[basis_rows["eigenvector"].map(len) == d]
        if basis_rows.empty:
            raise ValueError(f"no PCA basis of dimension {d} for dataset {dataset!r} (run {arch}, seed {seed})")
        k = int(basis_rows["kernel_size"].iloc[0])
        _, basis = pca_basis(basis_rows)
        count = banks[0].shape[0]
        shown = min(count, MAX_TILES)
        of = f"{shown} of {count}" if shown < count else f"all {count}"
        panels = (
            (banks[0], f"initial filters $W_0$\n({of})"),
            (banks[last], f"trained filters $W$, step {last}\n({of})"),
            (banks[last] - banks[0], f"change $W - W_0$\n({of})"),
            (basis.T, f"PCA basis $u_1 \\ldots u_{{{min(d, MAX_TILES)}}}$ of {d}\n(decreasing eigenvalue, row by row)"),
        )
        for ax, (bank, title) in zip(row, panels, strict=True):
            ax.imshow(tile_mosaic(filter_tiles(bank[:MAX_TILES], k)), interpolation="nearest")
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for spine in ax.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(f"{arch}\n{dataset}, {_label_name(labels)}, seed {seed}\n{k}×{k}×{d // (k * k)} filters",
                          fontsize=9.5)  # fmt: skip
    return _finish(fig, "First-layer filters (each tile contrast-normalised: grey = 0) and the patch PCA basis")


# ------------------------------------------------------------------------ 5. evolution over training


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges on a log axis around positive, increasing steps (geometric midpoints)."""
    steps = np.asarray(steps, dtype=np.float64)
    if len(steps) == 1:
        return np.array([steps[0] / 1.5, steps[0] * 1.5])
    mid = np.sqrt(steps[1:] * steps[:-1])
    return np.concatenate([[steps[0] ** 2 / mid[0]], mid, [steps[-1] ** 2 / mid[-1]]])


def _evolution_heatmap(fig: Figure, ax: plt.Axes, rows: pd.DataFrame) -> None:
    """One family's normalised profile (mean over seeds) over steps and components, log colour scale, its peak
    component marked, with an inset colour bar."""
    grid = rows.pivot_table(index="component", columns="step", values="normalised_energy", aggfunc="mean")
    steps = grid.columns.to_numpy(dtype=np.float64)
    components = grid.index.to_numpy()
    values = grid.to_numpy()
    # cells of equal height on the log component axis: edges at the geometric midpoints sqrt(i (i + 1))
    edges = np.sqrt(np.arange(len(components) + 1) * np.arange(1, len(components) + 2))
    edges[0] = 1 / np.sqrt(2)
    norm = LogNorm(vmin=1e-3, vmax=1.0, clip=True)
    mesh = ax.pcolormesh(_step_edges(steps), edges, values, cmap="magma", norm=norm, shading="flat")
    mesh.set_rasterized(True)  # a bitmap inside the SVG: thousands of cells stay small and fast
    has_peak = ~np.all(np.isnan(values), axis=0)
    peaks = components[np.argmax(np.where(np.isnan(values), -np.inf, values), axis=0)]
    ax.plot(steps[has_peak], peaks[has_peak], "o", ms=4, mfc="none", mew=1.2, color="#00e5ff")
    ax.set_xscale("log")
    ax.set_yscale("log")  # the leading components carry most of the energy
    ax.set_ylim(edges[0], edges[-1])
    _plain_log_ticks(ax.yaxis)
    ax.set_ylabel("PCA component $i$")
    ax.grid(False)
    # an inset colour bar keeps the heatmap as wide as the τ panel below it, so their step axes line up
    fig.colorbar(mesh, cax=ax.inset_axes([1.03, 0.0, 0.04, 1.0]), label=ENERGY_LABEL)


def _tau_panel(ax: plt.Axes, family: pd.DataFrame) -> None:
    """One family's fitted τ over steps: per seed (dots) and their geometric mean (line) for each formula, and the
    line τ ∝ step through the last one-parameter τ."""
    taus = []
    for formula, colour in (("one_parameter", "black"), ("init_aware", "#d62728")):
        f = family[family["formula"] == formula]
        if f.empty:
            continue
        ax.plot(f["step"], f["tau"], ".", color=colour, alpha=0.35, ms=4)
        mean = f.groupby("step")["tau"].agg(_geometric_mean)
        ax.plot(mean.index, mean.to_numpy(), "-", color=colour, lw=1.4)
        taus.append(f["tau"].to_numpy())
        if formula == "one_parameter" and np.isfinite(mean.iloc[-1]):
            reference = mean.iloc[-1] * mean.index.to_numpy(np.float64) / mean.index[-1]
            ax.plot(mean.index, reference, ":", color="#7f7f7f", lw=1.2)
            taus.append(reference)
    ax.set_yscale("log")
    values = np.concatenate(taus) if taus else np.array([])
    values = values[np.isfinite(values) & (values > 0)]
    if len(values):  # at least one decade, so that a major tick is labelled
        centre = np.sqrt(values.min() * values.max())
        ax.set_ylim(min(values.min(), centre / 4) / 1.3, max(values.max(), centre * 4) * 1.3)
    ax.yaxis.set_minor_formatter(NullFormatter())
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("training step")
    ax.set_ylabel(r"effective time $\tau$")


@_styled
def plot_evolution(energy: pd.DataFrame, fits: pd.DataFrame, *, kind: str = "W-W0") -> Figure:
    """How the profile of ``kind`` evolves: per dataset and architecture (true labels, else random), a heatmap of
    the normalised profile (mean over seeds, log colour scale) over training steps and components, with its peak
    component marked, above the fitted τ at each step (per seed, and their geometric mean) against τ ∝ step."""
    data = _normalised(energy)
    data = data[(data["kind"] == kind) & (data["step"] > 0) & data["labels"].isin(LEARNING_MODES)]
    families = []
    for (dataset, arch), g in data.groupby(["dataset", "arch"], sort=True):
        families.append((dataset, arch, _ordered(g["labels"], LABEL_ORDER)[0]))
    if not families:
        return _empty_figure(f"no {kind} snapshots after step 0 in this run")
    ncols = min(3, len(families))
    nrows = int(np.ceil(len(families) / ncols))
    fig = plt.figure(figsize=(4.6 * ncols, 5.0 * nrows + 0.6))
    outer = fig.add_gridspec(nrows, ncols)
    fits = fits[(fits["kind"] == kind) & (fits["step"] > 0)]
    for i, (dataset, arch, labels) in enumerate(families):
        inner = outer[divmod(i, ncols)].subgridspec(2, 1, height_ratios=[2.2, 1.2], hspace=0.08)
        ax_heat = fig.add_subplot(inner[0])
        ax_tau = fig.add_subplot(inner[1], sharex=ax_heat)
        ax_heat.tick_params(labelbottom=False)
        _evolution_heatmap(fig, ax_heat, data[(data["dataset"] == dataset) & (data["arch"] == arch)
                                              & (data["labels"] == labels)])  # fmt: skip
        ax_heat.set_title(f"{dataset} / {arch}, {_label_name(labels)}")
        _tau_panel(ax_tau, fits[(fits["dataset"] == dataset) & (fits["arch"] == arch) & (fits["labels"] == labels)])
    handles = [
        Line2D([], [], ls="", marker="o", mfc="none", mew=1.2, color="#00e5ff", label="peak component"),
        Line2D([], [], color="black", lw=1.4, marker=".", label=r"fitted $\tau$ (one-parameter)"),
        Line2D([], [], color="#d62728", lw=1.4, marker=".", label=r"fitted $\tau$ (init-aware)"),
        Line2D([], [], color="#7f7f7f", ls=":", lw=1.2, label=r"$\tau \propto$ step (theory)"),
    ]
    title = (f"Evolution of the {KIND_NAMES.get(kind, kind)} profile over training\n"
             "(heatmap: mean over seeds; dots: the seeds' fitted τ, line: their geometric mean)")  # fmt: skip
    free = len(families) % ncols
    return _finish(fig, title, handles, [fig.add_subplot(outer[nrows - 1, free:])] if free else [])


# ------------------------------------------------------------------------ 6. whitening


STAGE_NAMES = {
    "data": r"data (flat filters, $r_i^2 = \lambda_i$)",
    "init": "initialisation $W_0$",
    "trained": "trained $W$ (last step)",
}
STAGE_COLOURS = {"data": "#bdbdbd", "init": "#6baed6", "trained": "#08519c"}


def _jitter_x(dots: Sequence[Any], width: float) -> None:
    """Spread each group of dots along x by up to ±``width``, from a fixed seed: seaborn's own jitter draws from
    NumPy's global generator, so the same table gave a different figure each time."""
    rng = np.random.default_rng(0)
    for group in dots:
        xy = np.asarray(group.get_offsets())
        if len(xy) > 1:
            group.set_offsets(np.column_stack([xy[:, 0] + rng.uniform(-width, width, len(xy)), xy[:, 1]]))


def _whitening_shown(rows: pd.DataFrame) -> pd.Series:
    """Rows with a defined flatness (not applicable rows, NaN, are left out and named in their panel)."""
    ok = rows["flatness"].notna()
    return ok & rows["applicable"].astype(bool) if "applicable" in rows else ok


def _span_note(sub: pd.DataFrame) -> str:
    """A second title line naming the rank when a panel's flatness is over a rank-deficient span, else ''."""
    if "rank" not in sub or not (sub["rank"] < sub["components"]).any():
        return ""
    return "\nover the data's span: rank " + ", ".join(
        sorted({f"{r} of {c}" for r, c in zip(sub["rank"], sub["components"], strict=True)})
    )


def _whitening_panel(ax: plt.Axes, sub: pd.DataFrame, stages: list[str]) -> None:
    """One dataset's bars (mean over seeds) and dots (seeds), per condition and stage."""
    order = (sub.assign(rank=sub["labels"].map(lambda v: LABEL_ORDER.index(v) if v in LABEL_ORDER else 9))
             .sort_values(["arch", "rank"])["condition"].unique().tolist())  # fmt: skip
    common = {"data": sub, "x": "condition", "y": "flatness", "hue": "stage", "order": order,
              "hue_order": stages, "ax": ax, "legend": False}  # fmt: skip
    sns.barplot(**common, palette=STAGE_COLOURS, errorbar=None, alpha=0.9)
    drawn = len(ax.collections)
    sns.stripplot(**common, palette=dict.fromkeys(stages, "black"), dodge=True, size=3, jitter=False)
    _jitter_x(ax.collections[drawn:], 0.08 / len(stages))


@_styled
def plot_whitening(whitening: pd.DataFrame) -> Figure:
    """Response flatness (geometric / arithmetic mean of r_i² = (e_i σ_i)², 1 = white) of the data, the initial
    and the final trained first layer, per architecture and label condition (bars: mean over seeds, dots: seeds),
    one panel per dataset; a dataset whose flatness is not applicable gets a panel saying why."""
    rows = whitening[(whitening["stage"] != "trained") | whitening["final"].astype(bool)].copy()
    if rows.empty:
        return _empty_figure("no whitening measurements in this run")
    shown = _whitening_shown(rows)
    if not shown.any():
        reasons = sorted(set(rows["reason"]) - {""}) if "reason" in rows else []
        return _empty_figure("whitening not applicable: " + ("; ".join(reasons) or "no defined flatness"))
    short = {"true": "true labels", "random": "random labels", "frozen": "frozen layer 1"}
    rows["condition"] = rows["arch"] + "\n" + rows["labels"].map(lambda v: short.get(v, v))
    datasets = sorted(rows["dataset"].unique())
    counts = [max(1, rows.loc[(rows["dataset"] == d) & shown, "condition"].nunique()) for d in datasets]
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(4.0, 1.25 * sum(counts) + 1.8 * len(datasets)), 4.0),
                             sharey=True, squeeze=False, width_ratios=counts)  # fmt: skip
    stages = [s for s in STAGE_NAMES if s in set(rows.loc[shown, "stage"])]
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sub = rows[(rows["dataset"] == dataset) & shown]
        if sub.empty:
            reasons = sorted(set(rows.loc[rows["dataset"] == dataset, "reason"]) - {""}) if "reason" in rows else []
            ax.set_xticks([])
            ax.text(0.5, 0.5, "not applicable:\n" + "\n".join(reasons), ha="center", va="center", wrap=True,
                    fontsize=8, transform=ax.transAxes)  # fmt: skip
        else:
            _whitening_panel(ax, sub, stages)
        ax.set_title(dataset + _span_note(sub))
        ax.set_xlabel("")
        ax.set_yscale("log")  # eigenvalues spanning decades give flatness far below 1: a log axis shows the changes
        ax.set_ylim(max(1e-6, 0.5 * float(rows.loc[shown & (rows["flatness"] > 0), "flatness"].min())), 1.2)
        ax.set_ylabel("response flatness (log scale)\n" r"geometric / arithmetic mean of $r_i^2$, 1 = white")
        ax.tick_params(axis="x", labelsize=7.5)
    handles = [Patch(color=STAGE_COLOURS[s], label=STAGE_NAMES[s]) for s in stages]
    handles.append(Line2D([], [], marker="o", ls="", color="black", ms=3, label="one seed"))
    title = r"Whitening: how flat the first layer's response $r_i = e_i \sqrt{\lambda_i}$ is along the PCA components"
    return _finish(fig, title, handles)


# ------------------------------------------------------------------------ 7. accuracy


METRIC_NAMES = {"train_accuracy": "train accuracy", "test_accuracy": "held-out test accuracy"}
METRIC_STYLES = {"train_accuracy": "--", "test_accuracy": "-"}


@_styled
def plot_accuracy(metrics: pd.DataFrame, frozen: pd.DataFrame) -> Figure:
    """Train and test accuracy over training per dataset and architecture, by label condition (line: mean over
    seeds, band: min–max), and a last panel comparing the final test accuracy with the first layer trained and
    frozen at its init (``frozen``: dataset, arch, test_accuracy_trained, test_accuracy_frozen)."""
    acc = metrics[metrics["metric"].isin(list(METRIC_NAMES))]
    if acc.empty:
        return _empty_figure("no accuracy measurements in this run")
    families = sorted(acc[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))
    fig, axes, spare = _panel_axes(len(families) + 1, width=3.9, height=3.1)
    conditions = _ordered(acc["labels"], LABEL_ORDER)
    for ax, (dataset, arch) in zip(axes, families, strict=False):
        sub = acc[(acc["dataset"] == dataset) & (acc["arch"] == arch)]
        for labels in conditions:
            for metric, style in METRIC_STYLES.items():
                g = sub[(sub["labels"] == labels) & (sub["metric"] == metric)]
                if g.empty:
                    continue
                band = g.groupby("step")["value"].agg(["mean", "min", "max"])
                ax.plot(band.index, band["mean"], style, marker=".", ms=4, color=_label_colour(labels), lw=1.4)
                ax.fill_between(band.index, band["min"], band["max"], color=_label_colour(labels), alpha=0.15, lw=0)
        ax.set_xscale("symlog", linthresh=1)  # step 0 (the init) on a log-like axis
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{dataset} / {arch}")
        ax.set_xlabel("training step")
        ax.set_ylabel("accuracy (fraction correct)")
    _plot_frozen(axes[-1], frozen)
    handles = [Line2D([], [], color=_label_colour(lab), lw=1.6, label=_label_name(lab)) for lab in conditions]
    handles += [Line2D([], [], color="black", ls=s, lw=1.4, label=METRIC_NAMES[m]) for m, s in METRIC_STYLES.items()]
    return _finish(fig, "Accuracy over training (line: mean over seeds, band: min–max over seeds)", handles, spare)


def _plot_frozen(ax: plt.Axes, frozen: pd.DataFrame) -> None:
    """Final test accuracy with the whole network trained vs the first layer frozen at init, per run family."""
    ax.set_title("first layer frozen at init vs trained\n(final test accuracy, true labels)")
    if frozen.empty:
        ax.text(0.5, 0.5, "no run family has both\ntrue-label and frozen runs", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        return
    frozen = frozen.sort_values(["dataset", "arch"])
    x = np.arange(len(frozen))
    ax.bar(x - 0.2, frozen["test_accuracy_trained"], 0.4, color=_label_colour("true"), label="all layers trained")
    ax.bar(x + 0.2, frozen["test_accuracy_frozen"], 0.4, color=_label_colour("frozen"), label=LABEL_NAMES["frozen"])
    ax.set_xticks(x, frozen["dataset"] + "\n" + frozen["arch"], fontsize=7.5)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("final test accuracy")
    ax.legend(loc="lower right", framealpha=0.9)


# ------------------------------------------------------------------------ 8. theory check


CHECK_STYLES = {
    "simulated": {"ls": "", "marker": "o", "ms": 4, "mfc": "none", "mew": 1.0},
    "closed_form": {"ls": "-", "lw": 1.0},
    "formula_exp": {"ls": "--", "lw": 1.2},
}
CHECK_NAMES = {
    "simulated": "gradient descent, simulated step by step",
    "closed_form": "closed form $w(t)$",
    "formula_exp": FORMULA_NAME + r", $\tau = \eta t$, scaled",
}


def _check_steps(steps: Sequence[int], count: int = 4) -> list[int]:
    """Up to ``count`` of the steps, spread evenly on a log scale from the first to the last."""
    steps = sorted(set(int(s) for s in steps))
    if len(steps) <= count:
        return steps
    picks = np.unique(np.round(np.linspace(0, len(steps) - 1, count)).astype(int))
    return [steps[i] for i in picks]


@_styled
def plot_linear_check(profiles: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """The exact linear check (docs/method.md, "The exact linear check"): per dataset, the energy profile of a bank
    of linear filters trained by gradient descent on patches (markers) against the closed form (line) and the formula
    (dashed) at a few steps; below, the largest relative weight error and the profile's correlation with the formula
    at every step."""
    datasets = sorted(profiles["dataset"].unique())
    if not datasets:
        return _empty_figure("no exact linear check in this run")
    ncols = max(2, min(3, len(datasets)))
    top_rows = int(np.ceil(len(datasets) / ncols))
    fig, axes = plt.subplots(top_rows + 1, ncols, figsize=(4.2 * ncols, 3.4 * (top_rows + 1)), squeeze=False)
    for ax in axes.flat[len(datasets) : top_rows * ncols]:
        ax.set_visible(False)
    palette = sns.color_palette("viridis", 4)
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        sub = profiles[profiles["dataset"] == dataset]
        taus = summary[summary["dataset"] == dataset].set_index("step")["tau"]
        for colour, step in zip(palette, _check_steps(sub["step"].unique()), strict=False):
            at = sub[sub["step"] == step]
            simulated = at[at["profile"] == "simulated"].sort_values("component")["energy"].to_numpy()
            for name, style in CHECK_STYLES.items():
                rows = at[at["profile"] == name].sort_values("component")
                values = rows["energy"].to_numpy()
                if name == "formula_exp":
                    values = _scaled(values, simulated)
                ax.plot(rows["component"], values, color=colour, **style)
            tau = f", τ = {taus[step]:.3g}" if step in taus.index else ""
            ax.plot([], [], color=colour, lw=3, label=f"step {step}{tau}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{dataset}: linear filters by gradient descent")
        ax.set_xlabel(COMPONENT_LABEL)
        ax.set_ylabel(r"energy $e_i$ (filter norm along $u_i$)")
        _plain_log_ticks(ax.xaxis)
        ax.legend(loc="best", fontsize=7, framealpha=0.85)
    error_ax, corr_ax = axes[top_rows, 0], axes[top_rows, 1]
    for ax in axes[top_rows, 2:]:
        ax.set_visible(False)
    for colour, dataset in zip(sns.color_palette("tab10", len(datasets)), datasets, strict=True):
        s = summary[summary["dataset"] == dataset].sort_values("step")
        error_ax.plot(s["step"], s["max_relative_weight_error"].clip(lower=1e-17), "o-", ms=3, color=colour,
                      label=dataset)  # fmt: skip
        corr_ax.plot(s["step"], s["correlation_formula"], "o-", ms=3, color=colour,
                     label=f"{dataset}, exact " r"$(1 - \eta\lambda_i)^t$")  # fmt: skip
        corr_ax.plot(s["step"], s["correlation_formula_exp"], "s--", ms=3, mfc="none", color=colour,
                     label=f"{dataset}, " r"$e^{-\tau\lambda_i}$ form")  # fmt: skip
    error_ax.set(xscale="log", yscale="log", xlabel="gradient-descent step $t$",
                 ylabel="max relative weight error\n" r"$|w_{sim} - w_{closed}|\,/\,|w_{closed}|$",
                 title="simulation vs closed form (float64)")  # fmt: skip
    error_ax.legend(fontsize=7)
    corr_ax.set(xscale="log", xlabel="gradient-descent step $t$", ylabel="Pearson $r$, simulated profile vs formula",
                title="profile vs formula")  # fmt: skip
    corr_ax.legend(fontsize=7, loc="best")
    handles = [Line2D([], [], color="black", label=CHECK_NAMES[n], **s) for n, s in CHECK_STYLES.items()]
    return _finish(fig, "Exact check of the linear-systems closed form", handles)


# ------------------------------------------------------------------------ 9. consistency at matched effective time

#: The single-factor relations shown by the matched-tau figure, in this order.
MATCHED_RELATIONS = {"seed": "seed vs seed", "architecture": "architecture vs architecture",
                     "dataset": "dataset vs dataset", "labels": "true vs random labels"}  # fmt: skip
RELATION_COLOURS = {"seed": "#1f77b4", "architecture": "#d62728", "dataset": "#2ca02c", "labels": "#ff7f0e"}


def _binned_median(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of y in each bin of x that holds a value: (bin centres, medians)."""
    which = np.digitize(x, edges[1:-1])
    keep = [i for i in range(len(edges) - 1) if np.any(which == i)]
    return (edges[keep] + edges[np.add(keep, 1)]) / 2, np.array([np.median(y[which == i]) for i in keep])


@_styled
def plot_matched_tau(distances: pd.DataFrame, matched: pd.DataFrame) -> Figure:
    """Per relation (seed, architecture, dataset, labels): the Pearson correlation of every pair of W - W0 snapshot
    profiles of every pair of runs against the distance |ln tau_a - ln tau_b| of their fitted effective times (fits at
    the tau grid's bound left out), with the binned median, each pair of runs' matched snapshots (ringed) and the
    matching tolerance (docs/method.md, Matched effective time)."""
    relations = [r for r in MATCHED_RELATIONS if r in set(distances["relation"])]
    if not relations:
        return _empty_figure("no pair of runs differing in one factor has snapshots off the tau grid's bound")
    fig, axes, spare = _panel_axes(len(relations), ncols=2, width=4.4, height=3.3, sharex=True, sharey=True)
    high = max(float(distances["log_tau_distance"].max()), MATCHED_TAU_TOLERANCE * 1.5)
    edges = np.linspace(0.0, high, 13)
    for ax, rel in zip(axes, relations, strict=True):
        d = distances[distances["relation"] == rel]
        m = matched[(matched["relation"] == rel) & matched["matched"].astype(bool)]
        colour = RELATION_COLOURS[rel]
        ax.scatter(d["log_tau_distance"], d["correlation"], s=6, color=colour, alpha=0.25, linewidths=0)
        ax.scatter(m["log_tau_distance"], m["correlation"], s=26, facecolors="none", edgecolors="black", lw=0.8)
        x, y = _binned_median(d["log_tau_distance"].to_numpy(), d["correlation"].to_numpy(), edges)
        ax.plot(x, y, color=colour, lw=2)
        ax.axvline(MATCHED_TAU_TOLERANCE, color="#444444", ls="--", lw=1)
        pairs = d.groupby([f"{k}_{s}" for k in RUN_KEYS for s in "ab"]).ngroups
        ax.set_title(f"{MATCHED_RELATIONS[rel]}\n{pairs} pairs of runs ({len(m)} matched), {len(d)} pairs of snapshots")
        ax.set_xlabel(r"effective-time distance $|\ln\tau_a - \ln\tau_b|$")
        ax.set_ylabel("Pearson correlation of the two profiles")
    handles = [
        Line2D([], [], marker="o", ls="", color="#777777", alpha=0.5, label="a pair of snapshots (colour: relation)"),
        Line2D([], [], color="#777777", lw=2, label="median in bins of the distance"),
        Line2D([], [], marker="o", ls="", mfc="none", mec="black", label="matched snapshots of a pair of runs"),
        Line2D([], [], color="#444444", ls="--", label=r"matching tolerance: $\tau$ within a factor $\sqrt{2}$"),
    ]
    title = (
        "Correlation of W − W0 profiles against the distance of their effective times\n(fits off the τ grid's bound)"
    )
    return _finish(fig, title, handles, spare)


# ------------------------------------------------------------------------ 10. residuals against label information

#: The label-information orders as drawn by the residuals figure: (column, name, colour).
INFORMATION_ORDERS = (
    ("first_order_excess", "first-order label information (class means)", "#555555"),
    ("second_order_excess", "second-order label information (class covariances)", "#bbbbbb"),
)


def _residual_note(summary: pd.DataFrame, dataset: str, arch: str, labels: str) -> str:
    """One line of a residual panel: the group's fit r and the Spearman correlations of the squared residual with
    both orders of label information, with their permutation p."""
    row = summary[(summary["level"] == "group") & (summary["dataset"] == dataset) & (summary["arch"] == arch)
                  & (summary["labels"] == labels)]  # fmt: skip
    if row.empty:
        return ""
    row = row.iloc[0]
    if row.get("reason"):
        return f"{labels}: r = {row['fit_correlation']:.3f}; {row['reason']}"
    return (f"{labels}: r = {row['fit_correlation']:.3f}, ρ(r², I1) = {row['first_order_spearman']:+.2f} "
            f"(p {row['first_order_spearman_p']:.3f}), ρ(r², I2) = {row['second_order_spearman']:+.2f} "
            f"(p {row['second_order_spearman_p']:.3f})")  # fmt: skip


@_styled
def plot_residuals(residuals: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Per dataset and architecture: the residual of the final W - W0 profile against its one-parameter formula fit
    (both at unit norm) per component, mean over seeds with a min–max band, for true and random labels, above the
    components' label information of both orders (excess over the null, nats per patch; bars, right axis); the
    groups' Spearman correlations of the squared residual with the information in the title (firstlayer.residuals).
    """
    if residuals.empty:
        return _empty_figure("no trained W − W0 profiles with a formula fit in this run")
    families = sorted(residuals[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None))
    fig, axes, spare = _panel_axes(len(families), ncols=2, width=6.2, height=3.6)
    conditions = _ordered(residuals["labels"], LABEL_ORDER)
    for ax, (dataset, arch) in zip(axes, families, strict=True):
        here = residuals[(residuals["dataset"] == dataset) & (residuals["arch"] == arch)]
        info = here.groupby("component")[[c for c, _, _ in INFORMATION_ORDERS]].first()
        twin = ax.twinx()
        width = 0.4
        for i, (column, _, colour) in enumerate(INFORMATION_ORDERS):
            twin.bar(info.index + (i - 0.5) * width, info[column].fillna(0.0), width=width, color=colour, alpha=0.8,
                     lw=0, zorder=1)  # fmt: skip
        twin.set_ylabel("label information excess\n(nats per patch)", fontsize=8)
        twin.grid(False)
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        notes = []
        for labels in conditions:
            rows = here[here["labels"] == labels]
            band = rows.groupby("component")["residual"].agg(["mean", "min", "max"])
            colour = _label_colour(labels)
            ax.fill_between(band.index, band["min"], band["max"], color=colour, alpha=0.2, lw=0)
            ax.plot(band.index, band["mean"], "o-", ms=2.5, lw=1.3, color=colour)
            notes.append(_residual_note(summary, dataset, arch, labels))
        ax.axhline(0.0, color="black", lw=0.8)
        k, d = int(here["kernel_size"].iloc[0]), int(here["component"].max())
        ax.set_title(_family_title(dataset, arch, k, d) + "\n" + "\n".join(n for n in notes if n), fontsize=8)
        ax.set_xlabel(COMPONENT_LABEL)
        ax.set_ylabel("residual: measured − formula\n(both at unit norm)")
    handles = [Line2D([], [], color=_label_colour(lab), marker="o", ms=3, lw=1.3, label=_label_name(lab))
               for lab in conditions]  # fmt: skip
    handles += [Patch(color=colour, alpha=0.8, label=name) for _, name, colour in INFORMATION_ORDERS]
    title = ("Where the final W − W0 profile leaves the one-parameter formula, against the components' label "
             "information\n(line: mean residual over seeds, band: min–max; ρ: Spearman of the squared residual with "
             "the information, p: permutation)")  # fmt: skip
    return _finish(fig, title, handles, spare)
