"""Figures on small synthetic tables: panels per condition, labelled axes, legends in words, any grid (one or several
datasets/architectures, 27 or 147 components, with or without frozen runs); and the workflow's table of figures
(workflow/rules/figures.smk) with its one plot script."""

from __future__ import annotations

import inspect
import itertools
import runpy
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from firstlayer import plots
from firstlayer.analysis import RUN_KEYS
from firstlayer.io import Stamp, write_table
from firstlayer.theory import formula_profile

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"
STEPS = (0, 3, 10, 30, 100)


def eigenvalues(d: int) -> np.ndarray:
    return np.geomspace(1.0, 1e-3, d)


def run_grid(families, seeds=(0, 1)):
    """(dataset, arch, labels, kernel_size) families x seeds -> rows of run keys."""
    return [(*f, s) for f, s in itertools.product(families, seeds)]


def synthetic_energy(runs, steps=STEPS, seed=0) -> pd.DataFrame:
    """Profiles of W and W - W0 shaped like the formula (tau grows with the step), flat noisy ones at step 0; a
    frozen run keeps its init (W - W0 = 0)."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, arch, labels, k, s in runs:
        d = 3 * k * k
        lam = eigenvalues(d)
        init = 1 + 0.1 * rng.standard_normal(d)
        for step in steps:
            learned = (
                np.zeros(d) if labels == "frozen" else formula_profile(lam, 0.5 * step) * (1 + 0.05 * rng.random(d))
            )
            profiles = {"W": np.sqrt(init**2 + learned**2)}
            if step > 0:
                profiles["W-W0"] = learned
            for kind, e in profiles.items():
                rows.append(pd.DataFrame({
                    "step": step, "kind": kind, "component": np.arange(1, d + 1), "eigenvalue": lam, "energy": e,
                    "dataset": dataset, "arch": arch, "model": arch, "labels": labels, "seed": s, "kernel_size": k,
                }))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def synthetic_fits(energy: pd.DataFrame) -> pd.DataFrame:
    keys = ["dataset", "arch", "labels", "seed", "step", "kind"]
    runs = energy[keys].drop_duplicates()
    out = []
    for formula in ("one_parameter", "init_aware"):
        out.append(runs.assign(formula=formula, tau=0.5 * runs["step"].clip(lower=1), correlation=0.97,
                               beta=0.0 if formula == "one_parameter" else 0.1, at_bound=False))  # fmt: skip
    return pd.concat(out, ignore_index=True)


def all_axes(fig) -> list:
    """Visible axes of a figure and of its subfigures."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for sub in getattr(fig, "subfigs", []):
        if sub.get_visible():
            axes += all_axes(sub)
    return axes


def legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in all_axes(fig) if ax.get_legend() is not None]
    for sub in getattr(fig, "subfigs", []):
        legends += list(sub.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def data_axes(fig) -> list:
    """Axes that plot data (not colour bars, not image mosaics)."""
    return [ax for ax in all_axes(fig) if ax.axison and not ax.images and ax.get_label() != "<colorbar>"]


def assert_labelled(fig) -> None:
    for ax in data_axes(fig):
        if ax.texts and not ax.lines and not ax.patches:  # a panel that says what is missing
            continue
        shared = ax.get_shared_x_axes().get_siblings(ax)  # a stacked panel shares the x label below it
        assert any(a.get_xlabel() for a in shared) or ax.get_xticklabels(), f"panel {ax.get_title()!r} has no x label"
        shared = ax.get_shared_y_axes().get_siblings(ax)  # shared y: labelled in the first column
        assert any(a.get_ylabel() for a in shared), f"panel {ax.get_title()!r} has no y label"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


TWO_DATASETS = [("photos", "linear", "true", 3), ("photos", "linear", "random", 3),
                ("rotations", "linear", "true", 3), ("rotations", "linear", "random", 3),
                ("rotations", "resnet18", "true", 7), ("rotations", "resnet18", "frozen", 7)]  # fmt: skip


def test_profiles_one_panel_per_dataset_and_architecture() -> None:
    energy = synthetic_energy(run_grid(TWO_DATASETS))
    fig = plots.plot_profiles(energy)
    axes = data_axes(fig)
    assert sorted(ax.get_title().split("\n")[0] for ax in axes) == [
        "photos / linear", "rotations / linear", "rotations / resnet18",
    ]  # fmt: skip
    assert any("147 components" in ax.get_title() for ax in axes)
    assert_labelled(fig)
    texts = legend_texts(fig)
    assert {"true labels", "random labels", plots.INIT_NAME} <= set(texts)
    # frozen runs have W - W0 = 0: no curve for them in a W - W0 figure, but one for kind W
    assert plots.LABEL_NAMES["frozen"] not in texts
    assert plots.LABEL_NAMES["frozen"] in legend_texts(plots.plot_profiles(energy, kind="W"))
    resnet = next(ax for ax in axes if "resnet18" in ax.get_title())
    assert resnet.get_xscale() == "log" and max(resnet.lines[0].get_xdata()) == 147
    # the init line is the dashed one, and its band (min-max over seeds) is drawn
    assert any(line.get_linestyle() == "--" for line in resnet.lines) and resnet.collections
    assert plots.plot_profiles(energy, log_x=False).axes[0].get_xscale() == "linear"


def test_profiles_of_a_single_run() -> None:
    fig = plots.plot_profiles(synthetic_energy(run_grid([("d", "small_cnn", "random", 5)], seeds=(0,))))
    assert len(data_axes(fig)) == 1
    assert "75 components" in data_axes(fig)[0].get_title()


def test_fit_overlay_names_tau_and_correlation() -> None:
    energy = synthetic_energy(run_grid(TWO_DATASETS))
    fig = plots.plot_fit_overlay(energy, synthetic_fits(energy))
    axes = data_axes(fig)
    assert len(axes) == 5  # the learning families; the frozen one has no W - W0 to fit
    for ax in axes:
        assert "τ = " in ax.get_title() and "r = 0.970" in ax.get_title()
    assert "τ = 50" in axes[0].get_title()  # the last step's tau (0.5 * 100)
    assert_labelled(fig)
    texts = legend_texts(fig)
    assert {"measured, true labels", "measured, random labels", plots.FORMULA_NAME} <= set(texts)
    assert any(t.startswith("init-aware") for t in texts)


def consistency_pairs(runs, correlation=0.95) -> pd.DataFrame:
    rows = []
    for a, b in itertools.combinations(runs, 2):
        if a[3] != b[3]:
            continue  # different kernel sizes are never paired
        row = {"kind": "W-W0", "relation": "seed", "kernel_size": a[3], "correlation": correlation}
        for side, run in (("a", a), ("b", b)):
            row.update({f"{key}_{side}": value for key, value in zip(RUN_KEYS, (*run[:3], run[4]), strict=True)})
        rows.append(row)
    return pd.DataFrame(rows)


def test_consistency_heatmap_orders_runs_by_condition() -> None:
    runs = [r for r in run_grid(TWO_DATASETS) if r[2] != "frozen"]
    fig = plots.plot_consistency(consistency_pairs(runs))
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert len(names) == len(runs) == 10
    assert names[0] == "photos · linear · true labels · seed 0"  # true before random, though 'random' < 'true'
    assert names[2] == "photos · linear · random labels · seed 0"
    assert ax.get_xlabel() and ax.get_ylabel()
    matrix = ax.collections[0].get_array().reshape(10, 10)
    assert np.ma.is_masked(matrix[-1, 0])  # resnet18 (7x7) vs linear (3x3): not comparable
    assert len(ax.texts) == 100 - 2 * 2 * 8  # annotated, except the 32 incomparable cells


def test_consistency_of_many_runs_is_not_annotated() -> None:
    runs = run_grid([("d", "linear", "true", 3)], seeds=range(30))
    fig = plots.plot_consistency(consistency_pairs(runs))
    assert len(fig.axes[0].get_yticklabels()) == 30 and not fig.axes[0].texts


def test_filter_tiles_follow_the_conv_weight_order() -> None:
    """d is (channel, row, column): weight 1 at channel 0 (red), row 0, column 1 is a red pixel there."""
    bank = np.zeros((2, 27))
    bank[0, 0 * 9 + 0 * 3 + 1] = 1.0
    bank[1, 2 * 9 + 2 * 3 + 0] = -2.0  # blue channel, row 2, column 0, negative
    tiles = plots.filter_tiles(bank, 3)
    assert tiles.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(tiles[0, 0, 1], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(tiles[0, 1, 1], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(tiles[1, 2, 0], [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="not c×5×5"):
        plots.filter_tiles(bank, 5)
    mosaic = plots.tile_mosaic(tiles)
    assert mosaic.shape == (1 + 1 * 4, 1 + 2 * 4, 3)
    np.testing.assert_allclose(mosaic[1, 2], [1.0, 0.5, 0.5])


def synthetic_snapshots(runs, filters=64) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for dataset, arch, labels, k, s in runs:
        d = 3 * k * k
        for step in (0, 100):
            w = rng.standard_normal((filters, d))
            rows.append(pd.DataFrame({
                "dataset": dataset, "arch": arch, "labels": labels, "seed": s, "step": step,
                "filter": np.repeat(np.arange(filters), d), "position": np.tile(np.arange(d), filters),
                "weight": w.ravel(),
            }))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def synthetic_pca(dataset: str, k: int) -> pd.DataFrame:
    d = 3 * k * k
    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((d, d)))[0]
    return pd.DataFrame({"dataset": dataset, "kernel_size": k, "component": np.arange(1, d + 1),
                         "eigenvalue": eigenvalues(d), "eigenvector": list(basis.T)})  # fmt: skip


def test_filters_show_init_trained_and_basis_per_run() -> None:
    runs = [("photos", "linear", "true", 3, 0), ("rotations", "resnet18", "true", 7, 0)]
    pca = pd.concat([synthetic_pca("photos", 3), synthetic_pca("rotations", 7)], ignore_index=True)
    fig = plots.plot_filters(synthetic_snapshots(runs, filters=80), pca)
    axes = all_axes(fig)
    assert len(axes) == 8 and all(ax.images for ax in axes)
    titles = [ax.get_title() for ax in axes]
    assert titles[0] == "initial filters $W_0$\n(64 of 80)"
    assert "step 100" in titles[1]
    assert "u_{27}$ of 27" in titles[3] and "u_{64}$ of 147" in titles[7]
    assert axes[0].get_ylabel().startswith("linear") and axes[4].get_ylabel().startswith("resnet18")
    assert axes[7].images[0].get_array().shape == (1 + 8 * 8, 1 + 8 * 8, 3)  # 64 tiles of 7x7, 8 per row
    with pytest.raises(ValueError, match="no PCA basis of dimension 147"):
        plots.plot_filters(synthetic_snapshots(runs[1:]), synthetic_pca("rotations", 3))


def test_filters_show_the_first_seed_at_init_and_last_step() -> None:
    """A whole training job (seeds 0 to 2, every snapshot) gives one row: seed 0, step 0 and its last step."""
    runs = [("photos", "linear", "true", 3, s) for s in (2, 0, 1)]
    snapshots = synthetic_snapshots(runs, filters=8)
    middle = snapshots[snapshots.step == 100].assign(step=30)
    snapshots = pd.concat([snapshots, middle], ignore_index=True)
    drawn = plots.first_seed_ends(snapshots)
    assert set(drawn["seed"]) == {0} and set(drawn["step"]) == {0, 100}
    assert len(drawn) == 2 * 8 * 27
    fig = plots.plot_filters(snapshots, synthetic_pca("photos", 3))
    axes = all_axes(fig)
    assert len(axes) == 4 and "seed 0" in axes[0].get_ylabel() and "step 100" in axes[1].get_title()


def test_evolution_heatmap_and_tau_per_family() -> None:
    energy = synthetic_energy(run_grid(TWO_DATASETS))
    fig = plots.plot_evolution(energy, synthetic_fits(energy))
    heats = [ax for ax in data_axes(fig) if ax.get_ylabel() == "PCA component $i$"]
    taus = [ax for ax in data_axes(fig) if ax.get_ylabel() == r"effective time $\tau$"]
    assert len(heats) == len(taus) == 3  # photos/linear, rotations/linear, rotations/resnet18
    for heat, tau in zip(heats, taus, strict=True):
        assert heat.collections and heat.get_yscale() == "log" and heat.child_axes  # the inset colour bar
        assert tau.get_xlabel() == "training step" and tau.get_yscale() == "log"
        assert heat.get_shared_x_axes().joined(heat, tau)
    assert_labelled(fig)
    texts = legend_texts(fig)
    assert {"peak component", r"fitted $\tau$ (one-parameter)", r"$\tau \propto$ step (theory)"} <= set(texts)
    steps = sorted(energy.loc[energy.step > 0, "step"].unique())
    mesh = heats[0].collections[0]
    assert mesh.get_array().shape == (27, len(steps))


def test_matched_tau_panel_per_relation_with_matched_pairs_ringed() -> None:
    from firstlayer.analysis import final_profiles, matched_tau, pairwise_consistency, snapshot_profiles, tau_distance

    energy = synthetic_energy(run_grid(TWO_DATASETS))
    pairs = pairwise_consistency(final_profiles(energy))
    distances = tau_distance(pairs, snapshot_profiles(energy, synthetic_fits(energy)))
    matched = matched_tau(pairs, distances)
    fig = plots.plot_matched_tau(distances, matched)
    axes = data_axes(fig)
    assert [ax.get_title().split("\n")[0] for ax in axes] == ["seed vs seed", "dataset vs dataset",
                                                              "true vs random labels"]  # fmt: skip
    assert_labelled(fig)
    assert "matched snapshots of a pair of runs" in legend_texts(fig)
    seeds = matched[matched.relation == "seed"]
    rings = axes[0].collections[1].get_offsets()
    assert len(rings) == seeds["matched"].sum() == len(seeds)  # equal tau at every step: every pair matched
    fig = plots.plot_matched_tau(distances.iloc[0:0], matched.iloc[0:0])
    assert "no pair" in fig.axes[0].texts[0].get_text()


def synthetic_whitening(runs) -> pd.DataFrame:
    rows = []
    for dataset, arch, labels, k, s in runs:
        base = {"dataset": dataset, "arch": arch, "labels": labels, "seed": s, "model": arch, "kernel_size": k}
        rows += [{**base, "stage": "data", "step": -1, "final": False, "flatness": 0.1},
                 {**base, "stage": "init", "step": 0, "final": False, "flatness": 0.12},
                 {**base, "stage": "trained", "step": 10, "final": False, "flatness": 0.2},
                 {**base, "stage": "trained", "step": 100, "final": True, "flatness": 0.4}]  # fmt: skip
    return pd.DataFrame(rows)


def test_whitening_panel_per_dataset_stages_in_words() -> None:
    fig = plots.plot_whitening(synthetic_whitening(run_grid(TWO_DATASETS)))
    axes = data_axes(fig)
    assert [ax.get_title() for ax in axes] == ["photos", "rotations"]
    assert_labelled(fig)
    assert set(plots.STAGE_NAMES.values()) <= set(legend_texts(fig))
    # bars: 3 stages x conditions, each at the mean over seeds; only the final trained step
    heights = sorted({round(p.get_height(), 3) for p in axes[0].patches if p.get_height() > 0})
    assert heights == [0.1, 0.12, 0.4]
    assert "frozen" in " ".join(t.get_text() for t in axes[1].get_xticklabels())


def test_whitening_figure_is_the_same_for_the_same_table() -> None:
    """The seeds' dots are jittered from a fixed seed, not NumPy's global generator: the same table, the same file."""
    whitening = synthetic_whitening(run_grid(TWO_DATASETS, seeds=range(4)))
    first = plots.render_figure(plots.plot_whitening(whitening), "svg")
    assert plots.render_figure(plots.plot_whitening(whitening), "svg") == first
    dots = [c for c in data_axes(plots.plot_whitening(whitening))[0].collections if len(c.get_offsets()) == 4]
    spread = np.ptp(np.asarray(dots[0].get_offsets())[:, 0])
    assert 0 < spread <= 2 * 0.08 / 3  # spread, but within its bar (three stages side by side)


def synthetic_metrics(runs) -> pd.DataFrame:
    rows = []
    for dataset, arch, labels, _, s in runs:
        for step, metric in itertools.product((0, 1, 10, 100), ("loss", "train_accuracy", "test_accuracy")):
            rows.append({"dataset": dataset, "arch": arch, "labels": labels, "seed": s, "step": step,
                         "metric": metric, "value": 0.1 + 0.8 * step / 100})  # fmt: skip
    return pd.DataFrame(rows)


def test_accuracy_curves_and_frozen_panel() -> None:
    frozen = pd.DataFrame({"dataset": ["rotations"], "arch": ["resnet18"], "test_accuracy_trained": [0.8],
                           "test_accuracy_frozen": [0.75], "difference": [-0.05]})  # fmt: skip
    fig = plots.plot_accuracy(synthetic_metrics(run_grid(TWO_DATASETS)), frozen)
    axes = data_axes(fig)
    assert len(axes) == 4  # three families and the frozen comparison
    assert_labelled(fig)
    texts = legend_texts(fig)
    assert {"true labels", "random labels", plots.LABEL_NAMES["frozen"], "train accuracy",
            "held-out test accuracy", "all layers trained"} <= set(texts)  # fmt: skip
    assert [round(p.get_height(), 2) for p in axes[-1].patches] == [0.8, 0.75]
    empty = plots.plot_accuracy(synthetic_metrics(run_grid(TWO_DATASETS[:2])), frozen.iloc[:0])
    assert "no run family has both" in data_axes(empty)[-1].texts[0].get_text()


def synthetic_linear_check(datasets=("photos", "rotations"), d=27) -> tuple[pd.DataFrame, pd.DataFrame]:
    lam = eigenvalues(d)
    profiles, summary = [], []
    for dataset, step in itertools.product(datasets, (1, 3, 10, 30, 100, 300)):
        e = formula_profile(lam, 0.5 * step)
        for name in ("simulated", "closed_form", "formula", "formula_exp"):
            profiles.append(pd.DataFrame({"dataset": dataset, "step": step, "component": np.arange(1, d + 1),
                                          "eigenvalue": lam, "profile": name, "energy": e}))  # fmt: skip
        summary.append({"dataset": dataset, "step": step, "tau": 0.5 * step, "eta": 0.5, "filters": 256,
                        "patches": 1000, "max_relative_weight_error": 1e-15, "correlation_formula": 0.999,
                        "correlation_formula_exp": 0.99})  # fmt: skip
    return pd.concat(profiles, ignore_index=True), pd.DataFrame(summary)


@pytest.mark.parametrize("datasets", [("photos",), ("photos", "rotations", "a", "b")])
def test_linear_check_panels(datasets) -> None:
    fig = plots.plot_linear_check(*synthetic_linear_check(datasets))
    axes = data_axes(fig)
    assert len(axes) == len(datasets) + 2
    assert_labelled(fig)
    assert "step 300, τ = 150" in legend_texts(fig)
    assert "gradient descent, simulated step by step" in legend_texts(fig)
    assert len([t for t in legend_texts(fig) if t.startswith("step ")]) == 4 * len(datasets)


def test_empty_tables_give_a_figure_saying_so() -> None:
    energy = synthetic_energy(run_grid(TWO_DATASETS))
    fig = plots.plot_consistency(pd.DataFrame(columns=["kind", "relation", "correlation"]))
    assert "no pair" in fig.axes[0].texts[0].get_text()
    frozen_only = energy[energy.labels == "frozen"]
    fig = plots.plot_fit_overlay(frozen_only, synthetic_fits(frozen_only))
    assert "no trained" in fig.axes[0].texts[0].get_text()


def test_render_figure_png_and_stable_svg() -> None:
    energy = synthetic_energy(run_grid([("d", "linear", "true", 3)]))
    fig = plots.plot_profiles(energy)
    assert plots.render_figure(fig, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plots.render_figure(fig, "svg")
    assert svg.startswith(b"<?xml") and svg == plots.render_figure(fig, "svg")
    with pytest.raises(ValueError, match="pdf"):
        plots.render_figure(fig, "pdf")


# ------------------------------------------------------------------------ the table of figures in the workflow


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The workflow parsed on the smoke configuration (no DAG, nothing run): its FIGURES, rules by name, the names
    of its local rules and the default target's files."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        settings = ConfigSettings(configfiles=[SMOKE])
        workdir = tmp_path_factory.mktemp("parsed")
        # the public API prints rules but does not return them
        workflow = api.workflow(ResourceSettings(), settings, snakefile=REPO / "Snakefile", workdir=workdir)._workflow
        rules = {rule.name: rule for rule in workflow.rules}
        return SimpleNamespace(
            figures=workflow.globals["FIGURES"],
            rules=rules,
            local=set(workflow._localrules),  # is_local() holds for every rule without an executor
            targets=workflow.globals["all_outputs"](None),
        )


def test_every_figure_has_its_tables_plot_function_and_caption(parsed) -> None:
    figures = parsed.figures
    assert set(figures) == {"profiles", "fit_overlay", "consistency", "filters", "evolution", "whitening", "accuracy",
                            "linear_check", "matched_tau"}  # fmt: skip
    for figure, spec in figures.items():
        rule = parsed.rules[f"plot_{figure}"]
        assert rule.name in parsed.local and rule.script == "../scripts/plot.py"
        plot = getattr(plots, rule.params.plot)
        arguments = inspect.signature(plot).parameters
        required = {name for name, a in arguments.items() if a.default is a.empty and a.kind is a.POSITIONAL_OR_KEYWORD}
        assert set(rule.input.keys()) == required, f"{figure}: its tables are not the arguments of {plot.__name__}"
        assert set(rule.params.options) <= set(arguments)
        assert all(str(path).endswith(".parquet") for path in rule.input), figure
        outputs = [str(path) for path in rule.output]
        assert outputs == [f"results/figures/{figure}.png", f"results/figures/{figure}.svg"]
        assert set(outputs) <= set(parsed.targets), f"{figure} is not in rule all"
        for path in rule.output:
            shown = path.flags["report"]
            assert Path(shown.caption).is_file() and Path(shown.caption).stem == figure
            assert (shown.category, shown.subcategory, shown.labels["figure"]) == spec["in_report"]
            assert shown.labels["format"] == Path(str(path)).suffix[1:].upper()
    assert len([name for name in parsed.rules if name.startswith("plot_")]) == len(figures)


def test_the_plot_script_draws_a_figure_from_its_named_tables(tmp_path: Path) -> None:
    """workflow/scripts/plot.py with a stand-in `snakemake`: an input is one table or a list of them (concatenated),
    passed to the plot function by name with the options; it writes the PNG and the SVG."""
    energy = synthetic_energy(run_grid([("d", "linear", "true", 3)]))
    fits = synthetic_fits(energy)
    write_table(energy, tmp_path / "energy.parquet", Stamp("s", "c", "collect_energy"))
    halves = [fits.iloc[: len(fits) // 2], fits.iloc[len(fits) // 2 :]]
    for i, half in enumerate(halves):
        write_table(half, tmp_path / f"fits{i}.parquet", Stamp("s", "c", "fit_formula"))
    snakemake = SimpleNamespace(
        input={
            "energy": str(tmp_path / "energy.parquet"),
            "fits": [str(tmp_path / f"fits{i}.parquet") for i in (0, 1)],
        },
        output=[str(tmp_path / "fit_overlay.png"), str(tmp_path / "fit_overlay.svg")],
        log=[str(tmp_path / "plot.log")],
        params=SimpleNamespace(plot="plot_fit_overlay", options={"kind": "W"}),
    )
    runpy.run_path(str(REPO / "workflow" / "scripts" / "plot.py"), init_globals={"snakemake": snakemake})
    assert (tmp_path / "fit_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (tmp_path / "fit_overlay.svg").read_text()
    assert "trained weights" in svg and "τ = 50" in svg and "init-aware r = 0.970" in svg  # kind W; both files
