"""firstlayer.residuals: the residual of a final W - W0 profile against its one-parameter fit is reconstructed
exactly, vanishes on the formula, and its concentration on label-informative components is found where it is there
and not where it is not, against a sane permutation null; the rule's script and the figure."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from firstlayer import plots
from firstlayer.io import PROVENANCE, Stamp, write_table
from firstlayer.residuals import PERMUTATIONS, TOP, concentration, residual_frame, residual_summary
from firstlayer.theory import fit_frame, formula_profile, pearson

REPO = Path(__file__).resolve().parents[1]
D = 27


def eigenvalues(d: int = D) -> np.ndarray:
    return np.geomspace(20.0, 1e-3, d)


def information(d: int = D, dataset: str = "d", k: int = 3, seed: int = 0) -> pd.DataFrame:
    """Label information per component, in an order unrelated to the eigenvalues (so it does not follow the
    formula's shape): a few components carry much, the rest little."""
    rng = np.random.default_rng(seed)
    first = rng.exponential(0.01, d)
    second = rng.exponential(0.1, d)
    return pd.DataFrame({
        "component": np.arange(1, d + 1), "eigenvalue": eigenvalues(d), "kept": True,
        "first_order": first + 1e-3, "first_order_null_mean": 1e-3, "first_order_excess": first,
        "second_order": second + 1e-3, "second_order_null_mean": 1e-3, "second_order_excess": second,
        "total": first + second, "dataset": dataset, "kernel_size": k,
    })  # fmt: skip


def energy_rows(profiles: dict[tuple, np.ndarray], step: int = 100) -> pd.DataFrame:
    """{(dataset, arch, labels, seed): W - W0 profile} -> tidy energy at the last step (and a W row, a step-0 row)."""
    rows = []
    for (dataset, arch, labels, seed), e in profiles.items():
        d = e.size
        for s, kind, values in ((0, "W", np.ones(d)), (step, "W", e + 1.0), (step, "W-W0", e)):
            rows.append(pd.DataFrame({
                "step": s, "kind": kind, "component": np.arange(1, d + 1), "eigenvalue": eigenvalues(d),
                "energy": values, "dataset": dataset, "arch": arch, "model": arch, "labels": labels, "seed": seed,
                "kernel_size": round(np.sqrt(d / 3)), "normalisation": "dataset",
            }))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def fitted(energy: pd.DataFrame) -> pd.DataFrame:
    return fit_frame(energy)


def bumped(component: int, size: float = 1.0, tau: float = 30.0, noise: float = 0.02, seed: int = 1) -> np.ndarray:
    """The formula profile, with multiplicative noise, and ``size`` times its largest value added on one component."""
    rng = np.random.default_rng(seed)
    g = formula_profile(eigenvalues(), tau)
    e = g * (1 + noise * rng.standard_normal(D))
    e[component - 1] += size * g.max()
    return e


# ------------------------------------------------------------------------ the residual


def test_the_reconstructed_fit_has_the_fits_correlation() -> None:
    rng = np.random.default_rng(0)
    profiles = {("d", "cnn", labels, s): formula_profile(eigenvalues(), 10.0 * (s + 1)) * rng.lognormal(0, 0.3, D)
                for labels in ("true", "random") for s in (0, 1)}  # fmt: skip
    energy = energy_rows(profiles)
    frame = residual_frame(energy, fitted(energy), information())
    assert len(frame) == 4 * D and set(frame["step"]) == {100} and set(frame["kind"]) == {"W-W0"}
    for _, run in frame.groupby(["labels", "seed"]):
        r = pearson(run["energy"], formula_profile(run["eigenvalue"].to_numpy(), run["tau"].iloc[0]))
        assert r == pytest.approx(run["correlation"].iloc[0], abs=1e-12)
        assert pearson(run["measured"], run["fitted"]) == pytest.approx(run["correlation"].iloc[0], abs=1e-12)
        assert np.linalg.norm(run["measured"]) == pytest.approx(1.0)
        assert np.linalg.norm(run["fitted"]) == pytest.approx(1.0)
        cosine = float(run["measured"] @ run["fitted"])
        assert float((run["residual"] ** 2).sum()) == pytest.approx(2 * (1 - cosine), abs=1e-12)
    summary = residual_summary(frame, permutations=50)
    runs = summary[summary["level"] == "run"]
    assert np.allclose(runs["residual_norm"] ** 2, 2 * (1 - runs["cosine"]))


def test_a_profile_equal_to_the_formula_has_zero_residual() -> None:
    energy = energy_rows({("d", "cnn", "true", 0): 3.7 * formula_profile(eigenvalues(), 25.0)})
    fits = fitted(energy)
    frame = residual_frame(energy, fits, information())
    assert frame["correlation"].iloc[0] == pytest.approx(1.0, abs=1e-6)  # tau to grid precision
    assert np.abs(frame["residual"]).max() < 1e-4  # the fit's tau is found to grid precision
    exact = fits.assign(tau=np.where(fits["kind"] == "W-W0", 25.0, fits["tau"]))
    assert np.abs(residual_frame(energy, exact, information())["residual"]).max() < 1e-12


def test_only_learning_runs_at_their_last_step_against_the_one_parameter_fit() -> None:
    g = formula_profile(eigenvalues(), 20.0)
    energy = energy_rows({("d", "cnn", "true", 0): g, ("d", "cnn", "frozen", 0): 0 * g})
    energy = pd.concat([energy_rows({("d", "cnn", "true", 0): g * np.linspace(1, 2, D)}, step=10), energy])
    fits = fitted(energy)
    frame = residual_frame(energy, fits.assign(tau=np.where(fits["formula"] == "init_aware", 1e6, fits["tau"])),
                           information())  # fmt: skip
    assert set(frame["labels"]) == {"true"} and set(frame["step"]) == {100}
    assert np.abs(frame["residual"]).max() < 1e-4  # the init-aware tau (1e6) is not used


def test_missing_or_mismatched_label_information_gives_nan_and_a_reason() -> None:
    g = formula_profile(eigenvalues(), 20.0) * np.linspace(1, 1.5, D)
    energy = energy_rows({("d", "cnn", "true", 0): g, ("other", "cnn", "true", 0): g})
    info = information()
    frame = residual_frame(energy, fitted(energy), info)
    other = frame[frame["dataset"] == "other"]
    assert other["first_order_excess"].isna().all() and other["residual"].notna().all()
    assert (other["reason"] == "no label information for other at kernel size 3").all()
    assert (frame.loc[frame["dataset"] == "d", "reason"] == "").all()
    summary = residual_summary(frame, permutations=50)
    row = summary[(summary["dataset"] == "other") & (summary["level"] == "group")].iloc[0]
    assert np.isnan(row["first_order_spearman"]) and "no label information" in row["reason"]
    assert np.isfinite(row["residual_norm"])
    shifted = info.assign(eigenvalue=info["eigenvalue"] * 1.1)
    frame = residual_frame(energy, fitted(energy), shifted)
    assert frame["second_order_excess"].isna().all()
    assert frame.loc[frame["dataset"] == "d", "reason"].str.contains("another PCA").all()
    dropped = info.assign(kept=info["component"] <= D - 2)
    frame = residual_frame(energy, fitted(energy), dropped)
    d = frame[frame["dataset"] == "d"]
    assert d["first_order_excess"].isna().sum() == 2 and (d["reason"] != "").sum() == 2
    row = residual_summary(frame, permutations=50).query("dataset == 'd' and level == 'run'").iloc[0]
    assert row["components_with_information"] == D - 2 and row["reason"] == ""


# ------------------------------------------------------------------------ concentration on informative components


def summary_of(e: np.ndarray, info: pd.DataFrame, seeds: int = 1) -> pd.DataFrame:
    energy = energy_rows({("d", "cnn", "true", s): e * (1 + 0.01 * s) for s in range(seeds)})
    return residual_summary(residual_frame(energy, fitted(energy), info))


def test_a_bump_on_the_most_informative_component_is_found() -> None:
    info = information()
    for order in ("first_order", "second_order"):
        ranked = info.sort_values(f"{order}_excess", ascending=False)["component"].to_numpy()
        summary = summary_of(bumped(ranked[0]), info)
        for _, row in summary.iterrows():
            assert int(row["top_residual_components"].split(",")[0]) == ranked[0]
            assert row[f"{order}_top_components"] == ",".join(map(str, ranked[:TOP]))
            # one component of 27: the weighted information's p is near its floor, about 1/27
            assert row[f"{order}_weighted"] > 2 * row[f"{order}_weighted_null_mean"]
            assert row[f"{order}_weighted_p"] < 0.05
            assert row[f"{order}_top_share"] > 0.5 > row[f"{order}_top_share_null_mean"]
            assert row[f"{order}_top_share_p"] < 0.2  # a random 3 of 27 hold the bump 1 time in 9
            assert row[f"{order}_top_residual_mean"] > 0  # more energy there than the formula gives
        # on all three most informative components: the top-3 share finds it as well
        e = bumped(ranked[0], 0.5) + bumped(ranked[1], 0.5) + bumped(ranked[2], 0.5)
        row = summary_of(e, info).query("level == 'run'").iloc[0]
        assert row[f"{order}_top_share"] > row[f"{order}_top_share_null_q95"]
        assert row[f"{order}_top_share_p"] <= 0.01 and row[f"{order}_weighted_p"] <= 0.01


def test_a_residual_that_follows_the_information_is_found_by_spearman() -> None:
    info = information()
    g = formula_profile(eigenvalues(), 30.0)
    rng = np.random.default_rng(3)
    sign = rng.choice([-1.0, 1.0], D)  # the network adds or removes energy, as much as the component is informative
    x = info["second_order_excess"].to_numpy()
    e = g * (1 + 0.6 * sign * x / x.max())
    row = summary_of(e, info, seeds=2).query("level == 'group'").iloc[0]
    assert row["runs"] == 2 and pd.isna(row["seed"])
    assert row["second_order_spearman"] > 0.4 and row["second_order_spearman_p"] <= 0.01


def test_a_bump_on_an_uninformative_component_is_not() -> None:
    info = information()
    for order in ("first_order", "second_order"):
        x = info[f"{order}_excess"].to_numpy()
        calm = int(info["component"].to_numpy()[np.argsort(x)[D // 3]])  # low information, not the least
        row = summary_of(bumped(calm), info).query("level == 'run'").iloc[0]
        assert row["top_residual_components"].split(",")[0] == str(calm)
        assert str(calm) not in row[f"{order}_top_components"].split(",")
        assert row[f"{order}_top_share"] < row[f"{order}_top_share_null_q95"]
        assert row[f"{order}_top_share_p"] > 0.2 and row[f"{order}_weighted_p"] > 0.2
        assert row[f"{order}_spearman_p"] > 0.05


def test_the_permutation_null_is_sane() -> None:
    rng = np.random.default_rng(7)
    n = 27
    q, x = rng.exponential(1.0, n), rng.exponential(1.0, n)
    c = concentration(q, x)
    again = concentration(q, x)  # fixed seed: the same null
    assert (c.spearman_p, c.weighted_p, c.top_share_p, c.top_share_null_q95) == (
        again.spearman_p, again.weighted_p, again.top_share_p, again.top_share_null_q95)  # fmt: skip
    assert c.top_share_null_mean == pytest.approx(TOP / n, rel=0.1)  # a random 3 of n components
    assert c.weighted_null_mean == pytest.approx(x.mean(), rel=0.05)  # q-weighted mean of a random order of x
    assert c.top_share_null_mean <= c.top_share_null_q95 <= 1
    ps = (c.spearman_p, c.weighted_p, c.top_share_p)
    assert 1 / (PERMUTATIONS + 1) <= min(ps) <= max(ps) <= 1
    assert list(c.top) == list(np.argsort(-x)[:TOP])
    assert c.top_share == pytest.approx(q[c.top].sum() / q.sum())
    assert c.spearman == pytest.approx(pd.Series(q).corr(pd.Series(x), method="spearman"))
    # weights equal everywhere: every share is 3/n, the p-value is 1 (ties count as at least as large)
    flat = concentration(np.ones(n), x)
    assert flat.top_share == pytest.approx(TOP / n) and flat.top_share_p == 1.0
    assert flat.weighted == pytest.approx(x.mean()) and flat.weighted_p == 1.0
    # under independence the p-values are about uniform
    draws = [concentration(rng.exponential(1, n), rng.exponential(1, n), permutations=200, seed=s) for s in range(200)]
    ps = np.array([[c.spearman_p, c.weighted_p, c.top_share_p] for c in draws])
    assert np.all((ps < 0.05).mean(axis=0) < 0.12) and np.all((ps < 0.5).mean(axis=0) > 0.35)
    # the weights on the top components make the smallest p-value there is
    strong = concentration(np.where(np.isin(np.arange(n), np.argsort(-x)[:TOP]), 10.0, 0.1), x)
    assert strong.top_share_p == pytest.approx(1 / (PERMUTATIONS + 1), abs=2 / PERMUTATIONS)
    with pytest.raises(ValueError, match="top-3"):
        concentration(np.ones(3), np.ones(3))


# ------------------------------------------------------------------------ the script and the figure


def test_the_script_writes_both_tables_with_provenance(tmp_path: Path) -> None:
    profiles = {("d", arch, labels, s): bumped(5, 0.5, seed=s) for arch in ("cnn", "linear")
                for labels in ("true", "random") for s in (0, 1)}  # fmt: skip
    energy = energy_rows(profiles)
    tables = {"energy": energy, "fits": fitted(energy), "label_information": information()}
    for name, frame in tables.items():
        write_table(frame, tmp_path / f"{name}.parquet", Stamp("s", "c", name))
    snakemake = SimpleNamespace(
        input=SimpleNamespace(**{n: str(tmp_path / f"{n}.parquet") for n in tables}),
        output=SimpleNamespace(residuals=str(tmp_path / "residuals.tab"), summary=str(tmp_path / "summary.tab")),
        log=[str(tmp_path / "residuals.log")],
        params=SimpleNamespace(code="abc"),
        rule="residuals",
    )
    runpy.run_path(str(REPO / "workflow" / "scripts" / "residuals.py"), init_globals={"snakemake": snakemake})
    residuals = pd.read_parquet(snakemake.output.residuals)
    summary = pd.read_parquet(snakemake.output.summary)
    for frame in (residuals, summary):
        assert set(PROVENANCE) <= set(frame.columns) and set(frame["made_by"]) == {"residuals"}
    assert len(residuals) == 8 * D
    assert sorted(summary.groupby("level").size().items()) == [("group", 4), ("run", 8)]
    figure = plots.plot_residuals(residuals, summary)
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 2 * 2  # two panels, each with its twin axis
    titles = " ".join(ax.get_title() for ax in figure.axes)
    assert "ρ(r², I1)" in titles and "d / cnn" in titles
    assert plots.render_figure(figure, "png")[:8] == b"\x89PNG\r\n\x1a\n"
    empty = plots.plot_residuals(residuals.iloc[:0], summary.iloc[:0])
    assert "no trained" in empty.axes[0].texts[0].get_text()
