"""Unit tests for firstlayer.analysis: final profiles, pairwise consistency and its summary, profile contrast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firstlayer.analysis import (
    HIGH,
    MATCHED_TAU_TOLERANCE,
    RUN_KEYS,
    arch_relation,
    consistency_summary,
    final_profiles,
    log_correlation,
    pairwise_consistency,
    profile_contrast,
    rank_correlation,
    relation,
)
from firstlayer.theory import pearson

KERNEL = {"linear": 3, "small_cnn": 3, "resnet18": 5}
STEPS = (0, 5, 40)


def shape(d: int) -> np.ndarray:
    """The shared trained shape of every run with d components (band-pass-like)."""
    i = np.arange(1, d + 1)
    return i * np.exp(-i / 6.0) + 0.1


def run_profiles(dataset: str, arch: str, labels: str, seed: int) -> dict[tuple[str, int], np.ndarray]:
    d = 3 * KERNEL[arch] ** 2
    rng = np.random.default_rng([len(dataset), len(arch), len(labels), seed])
    scale = rng.uniform(0.5, 2.0)
    w0 = 1.0 + 0.05 * rng.normal(size=d)  # flat-ish init
    return {("W", 0): w0, ("W", 5): w0 + rng.uniform(size=d), ("W-W0", 5): rng.uniform(size=d),
            ("W", 40): scale * shape(d), ("W-W0", 40): 3 * scale * shape(d)}  # fmt: skip


RUNS = [(ds, arch, lab, s) for ds in ("photos", "rotations") for arch in KERNEL for lab in ("true", "random")
        for s in (0, 1)]  # fmt: skip


@pytest.fixture(scope="module")
def profiles_by_run() -> dict:
    return {r: run_profiles(*r) for r in RUNS}


@pytest.fixture(scope="module")
def energy(profiles_by_run) -> pd.DataFrame:
    frames = []
    for (ds, arch, lab, seed), profs in profiles_by_run.items():
        for (kind, step), e in profs.items():
            d = len(e)
            frames.append(pd.DataFrame({"dataset": ds, "arch": arch, "labels": lab, "seed": seed, "kind": kind,
                                        "step": step, "kernel_size": KERNEL[arch], "component": np.arange(1, d + 1),
                                        "eigenvalue": 1.0 / np.arange(1, d + 1), "energy": e}))  # fmt: skip
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)  # row order must not matter


@pytest.fixture(scope="module")
def finals(energy) -> pd.DataFrame:
    return final_profiles(energy)


def test_final_profiles_rows_and_values(finals, profiles_by_run):
    assert len(finals) == 3 * len(RUNS)
    assert set(finals.kind) == {"W", "W-W0", "W0"}
    assert not finals.duplicated([*RUN_KEYS, "kind"]).any()
    for _, row in finals.iterrows():
        run = tuple(row[k] for k in RUN_KEYS)
        key = ("W", 0) if row["kind"] == "W0" else (row["kind"], 40)
        assert row["step"] == key[1]
        assert row["kernel_size"] == KERNEL[row["arch"]]
        np.testing.assert_array_equal(row["profile"], profiles_by_run[run][key])  # ordered by component


def test_relation_names():
    a = pd.Series({"dataset": "x", "arch": "linear", "labels": "true", "seed": 0})
    assert relation(a, a.copy()) == "same"
    assert relation(a, a.replace(0, 1)) == "seed"
    assert relation(a, pd.Series({**a, "arch": "small_cnn", "labels": "random"})) == "architecture+labels"
    assert relation(a, pd.Series({**a, "dataset": "y", "seed": 3})) == "dataset+seed"
    assert relation(a, pd.Series({"dataset": "y", "arch": "r", "labels": "random", "seed": 1})) == (
        "dataset+architecture+labels+seed"
    )


@pytest.fixture(scope="module")
def pairs(finals) -> pd.DataFrame:
    return pairwise_consistency(finals)


def test_pairs_only_within_a_kernel_size(pairs):
    between = pairs[pairs.relation != "trained vs init"]
    n3 = sum(KERNEL[r[1]] == 3 for r in RUNS)
    n5 = len(RUNS) - n3
    for kind in ("W", "W-W0"):
        sub = between[between.kind == kind]
        assert len(sub) == n3 * (n3 - 1) // 2 + n5 * (n5 - 1) // 2
    assert (between.arch_a.map(KERNEL) == between.kernel_size).all()
    assert (between.arch_b.map(KERNEL) == between.kernel_size).all()
    mixed = between[(between.arch_a == "resnet18") != (between.arch_b == "resnet18")]
    assert mixed.empty


def test_identical_shapes_correlate_perfectly(pairs):
    between = pairs[pairs.relation != "trained vs init"]
    np.testing.assert_allclose(between.correlation, 1.0, atol=1e-12)


def test_pair_relations(pairs):
    between = pairs[(pairs.relation != "trained vs init") & (pairs.kind == "W")]
    for _, row in between.iterrows():
        diff = [name for k, name in zip(RUN_KEYS, ("dataset", "architecture", "labels", "seed"), strict=True)
                if row[f"{k}_a"] != row[f"{k}_b"]]  # fmt: skip
        assert row["relation"] == "+".join(diff)
    rels = set(between.relation)
    assert {"seed", "labels", "architecture", "dataset", "architecture+labels"} <= rels
    assert "dataset+architecture+labels+seed" in rels
    assert "same" not in rels
    # e.g. the two seeds of one (dataset, arch, labels) are one 'seed' pair
    seed_pairs = between[between.relation == "seed"]
    assert len(seed_pairs) == len(RUNS) // 2


def test_trained_vs_init(pairs, profiles_by_run):
    tvi = pairs[pairs.relation == "trained vs init"]
    assert len(tvi) == 2 * len(RUNS)
    for _, row in tvi.iterrows():
        assert all(row[f"{k}_a"] == row[f"{k}_b"] for k in RUN_KEYS)
        run = tuple(row[f"{k}_a"] for k in RUN_KEYS)
        expected = pearson(profiles_by_run[run][(row["kind"], 40)], profiles_by_run[run][("W", 0)])
        assert row["correlation"] == pytest.approx(expected, abs=1e-12)
    assert tvi.correlation.abs().max() < 0.99  # the flat-ish init is unlike the trained shape


def test_pairwise_with_a_real_difference():
    """One profile reversed: its pairs get the correlation of the two shapes, not 1."""
    d = 27
    base = {"dataset": "x", "arch": "linear", "labels": "true", "kind": "W", "step": 10, "kernel_size": 3}
    shapes = [shape(d), 2 * shape(d), shape(d)[::-1]]
    rows = [{**base, "seed": s, "profile": p} for s, p in enumerate(shapes)]
    pairs = pairwise_consistency(pd.DataFrame(rows))
    assert len(pairs) == 3 and set(pairs.relation) == {"seed"}
    corr = {(r.seed_a, r.seed_b): r.correlation for r in pairs.itertuples()}
    assert corr[(0, 1)] == pytest.approx(1.0)
    assert corr[(0, 2)] == pytest.approx(pearson(shape(d), shape(d)[::-1]))
    assert corr[(0, 2)] < 0.5


def test_rank_and_log_correlations_weigh_every_component():
    """Two profiles that agree on their three largest components and disagree on the many small ones: Pearson's r on
    the energies says they agree; by rank and on a log scale they do not. A monotone map changes neither rank r."""
    big = np.array([10.0, 8.0, 6.0])
    rng = np.random.default_rng(0)
    small = 10 ** rng.uniform(-3, -1, size=24)  # spread over two decades, below the three large ones
    a, b = np.concatenate([big, small]), np.concatenate([big, small[::-1]])
    assert pearson(a, b) > 0.99
    assert rank_correlation(a, b) < 0.8 and log_correlation(a, b) < 0.8
    assert rank_correlation(a, a**3) == pytest.approx(1.0) and log_correlation(a, 5 * a) == pytest.approx(1.0)
    ranks = pd.Series(a).rank().to_numpy()  # Spearman's r is Pearson's on the ranks, ties averaged
    assert rank_correlation(a, b) == pytest.approx(pearson(ranks, pd.Series(b).rank().to_numpy()))
    assert np.isnan(log_correlation(np.r_[a[:-1], 0.0], b))


def test_consistency_summary_reports_rank_and_log_means(pairs):
    summary = consistency_summary(pairs)
    for (kind, rel, arch), g in summary.groupby(["kind", "relation", "arch"]):
        sel = pairs[(pairs.kind == kind) & (pairs.relation == rel)]
        sel = sel[sel.arch_a != sel.arch_b] if arch == "(mixed)" else sel[(sel.arch_a == arch) & (sel.arch_b == arch)]
        assert g["rank_mean"].iloc[0] == pytest.approx(sel.rank_correlation.mean())
        assert g["log_mean"].iloc[0] == pytest.approx(sel.log_correlation.mean())


def test_consistency_summary(pairs):
    summary = consistency_summary(pairs)
    assert {"kind", "relation", "arch", "n", "mean", "min", "max"} <= set(summary.columns)
    assert summary.n.sum() == len(pairs)
    for (kind, rel, arch), g in summary.groupby(["kind", "relation", "arch"]):
        sel = pairs[(pairs.kind == kind) & (pairs.relation == rel)]
        if arch == "(mixed)":
            sel = sel[sel.arch_a != sel.arch_b]
        else:
            sel = sel[(sel.arch_a == arch) & (sel.arch_b == arch)]
        row = g.iloc[0]
        assert row.n == len(sel)
        assert row["mean"] == pytest.approx(sel.correlation.mean())
        assert row["min"] == pytest.approx(sel.correlation.min())
        assert row["max"] == pytest.approx(sel.correlation.max())
    # architecture pairs among k=3 networks are 'mixed'; seed pairs have one architecture
    assert set(summary[summary.relation == "architecture"].arch) == {"(mixed)"}
    assert set(summary[summary.relation == "seed"].arch) == set(KERNEL)


def test_profile_contrast():
    profiles = pd.DataFrame([
        {"dataset": "x", "arch": "linear", "labels": "true", "seed": 0, "kind": "W0", "step": 0, "kernel_size": 1,
         "profile": np.array([2.0, 2.0, 2.0])},
        {"dataset": "x", "arch": "linear", "labels": "true", "seed": 0, "kind": "W", "step": 9, "kernel_size": 1,
         "profile": np.array([1.0, 2.0, 3.0])},
    ])  # fmt: skip
    out = profile_contrast(profiles)
    assert len(out) == 2 and "profile" not in out.columns
    flat, peaked = out.iloc[0], out.iloc[1]
    assert flat.coefficient_of_variation == pytest.approx(0.0) and flat.max_over_min == pytest.approx(1.0)
    assert peaked.coefficient_of_variation == pytest.approx(np.std([1, 2, 3]) / 2.0)
    assert peaked.max_over_min == pytest.approx(3.0)
    assert peaked.kind == "W" and peaked.step == 9


def test_profile_contrast_of_synthetic_runs(finals):
    out = profile_contrast(finals)
    assert len(out) == len(finals)
    init = out[out.kind == "W0"]
    trained = out[out.kind == "W"]
    assert init.coefficient_of_variation.max() < trained.coefficient_of_variation.min()


# ------------------------------------------------------------------------ bootstrap over seeds


def synthetic_seed_pairs(n_seeds: int, spread: float) -> pd.DataFrame:
    """Seed-vs-seed pairs of one family: seed s has a quality q_s (evenly spread over [0, spread], shuffled) and a
    pair correlates 1 - (q_a + q_b)."""
    q = np.random.default_rng(n_seeds).permutation(np.linspace(0, spread, n_seeds))
    rows = [{"kind": "W-W0", "relation": "seed", "arch_a": "linear", "arch_b": "linear", "seed_a": a, "seed_b": b,
             "correlation": 1 - q[a] - q[b]} for a in range(n_seeds) for b in range(a + 1, n_seeds)]  # fmt: skip
    return pd.DataFrame(rows)


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_seeds():
    widths = []
    for n in (4, 16):
        pairs = synthetic_seed_pairs(n, 0.04)
        s = consistency_summary(pairs, n_boot=500).iloc[0]
        assert s["n_seeds"] == n and s["n"] == n * (n - 1) // 2
        assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["ci_low"] < s["ci_high"]
        assert s["ci_low"] >= pairs.correlation.min() and s["ci_high"] <= pairs.correlation.max()
        widths.append(s["ci_high"] - s["ci_low"])
    assert widths[1] < widths[0]


def test_bootstrap_of_identical_pairs_is_a_point_and_is_reproducible():
    pairs = synthetic_seed_pairs(5, 0.0).assign(correlation=0.97)
    a = consistency_summary(pairs, n_boot=200, seed=3)
    b = consistency_summary(pairs, n_boot=200, seed=3)
    assert a.equals(b)
    assert a["ci_low"].iloc[0] == pytest.approx(0.97) and a["ci_high"].iloc[0] == pytest.approx(0.97)


def test_bootstrap_weights_same_seed_pairs_by_one_count():
    from firstlayer.analysis import bootstrap_mean

    values = np.array([0.1, 0.9])
    seeds = np.array([0, 1])
    boots = bootstrap_mean(values, seeds, seeds, 4000, np.random.default_rng(0))  # trained vs init: a == b
    assert set(np.round(np.unique(boots), 6)) <= {0.1, 0.5, 0.9}
    assert np.mean(boots) == pytest.approx(0.5, abs=0.02)


# ------------------------------------------------------------------------ whitening


def test_white_data_has_flatness_one_and_a_whitening_bank_too():
    from firstlayer.analysis import response_flatness

    assert response_flatness(np.ones(27), np.full(27, 2.5)) == pytest.approx(1.0)
    lam = np.geomspace(10, 0.01, 27)
    assert response_flatness(np.ones(27), lam) < 0.5  # the data alone: r^2 = lambda, far from flat
    assert response_flatness(1 / np.sqrt(lam), lam) == pytest.approx(1.0)  # e ∝ 1/sigma whitens
    assert response_flatness(np.sqrt(lam), lam) < response_flatness(np.ones(27), lam)  # PCA-like: less white
    assert response_flatness(np.r_[0.0, np.ones(26)], lam) == 0.0


def test_whitening_frame_stages(energy):
    from firstlayer.analysis import whitening_frame, whitening_summary

    w = whitening_frame(energy.assign(model="m"))
    runs = energy.groupby(RUN_KEYS).ngroups
    assert (w.stage == "data").sum() == runs and (w.stage == "init").sum() == runs
    assert w[w.final].shape[0] == runs and (w[w.final].stage == "trained").all()
    assert w["flatness"].between(0, 1).all()
    s = whitening_summary(w)
    assert len(s) == energy.groupby(["dataset", "arch", "labels"]).ngroups
    assert s["fraction_flatter_than_init"].between(0, 1).all()


def old_response_flatness(energy: np.ndarray, eigenvalues: np.ndarray) -> float:
    """The formula before the data's span was measured (eigenvalues floored at 1e-12 of the largest)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = np.maximum(lam, lam.max() * 1e-12)
    r2 = np.asarray(energy, dtype=np.float64) ** 2 * lam
    if np.any(r2 <= 0):
        return 0.0
    return float(np.exp(np.mean(np.log(r2))) / np.mean(r2))


def test_full_rank_flatness_is_unchanged(energy):
    """Full-rank data (every default dataset): the span is every component, so each value is the old one, bit
    for bit, down to a photos-like spectrum whose smallest eigenvalue is 1e-5 of its largest."""
    from firstlayer.analysis import response_flatness, whitening_frame

    rng = np.random.default_rng(0)
    for lam in (np.geomspace(10, 0.01, 27), np.geomspace(3.0, 3e-5, 147), 1.0 / np.arange(1, 76)):
        for e in (np.ones_like(lam), rng.uniform(0.1, 2, lam.size), 1 / np.sqrt(lam), np.sqrt(lam)):
            assert response_flatness(e, lam) == old_response_flatness(e, lam)
    w = whitening_frame(energy.assign(model="m"))
    old = []
    for _, g in energy[energy.kind == "W"].groupby(["dataset", "arch", "labels", "seed", "kernel_size"]):
        for i, (_, s) in enumerate(g.sort_values("component").groupby("step", sort=True)):
            lam = s["eigenvalue"].to_numpy()
            old += [old_response_flatness(np.ones_like(lam), lam)] if i == 0 else []
            old.append(old_response_flatness(s["energy"].to_numpy(), lam))
    assert w["flatness"].tolist() == old
    assert w["applicable"].all() and (w["rank"] == w["components"]).all() and (w["reason"] == "").all()


def test_spectrum_down_to_1e5_of_the_largest_keeps_every_component():
    from firstlayer.analysis import RANK_TOLERANCE, data_span, flatness_detail

    lam = np.geomspace(1.0, 1e-5, 27)  # the photos' spread: smallest ~1e-5 of the largest
    assert data_span(lam).all() and RANK_TOLERANCE <= 1e-5 * 1e-3  # far inside the span, not near its edge
    detail = flatness_detail(np.ones(27), lam)
    assert detail["rank"] == detail["components"] == 27 and detail["applicable"] and detail["reason"] == ""


def test_span_leaves_out_rounding_size_eigenvalues_only():
    from firstlayer.analysis import RANK_TOLERANCE, data_span, flatness_detail

    lam = np.r_[np.geomspace(4.0, 4e-5, 9), 4.0 * np.array([1e-13, 3e-16, 1e-17]), 0.0, 0.0, -1e-17]
    assert data_span(lam).tolist() == [True] * 9 + [False] * 6
    assert data_span(np.r_[1.0, 2 * RANK_TOLERANCE, 0.5 * RANK_TOLERANCE]).tolist() == [True, True, False]
    detail = flatness_detail(np.ones(lam.size), lam)
    assert detail["rank"] == 9 and detail["components"] == 15
    assert detail["flatness"] == pytest.approx(old_response_flatness(np.ones(9), lam[:9]), rel=1e-15)


@pytest.mark.parametrize(
    ("energy", "eigenvalues", "reason"),
    [
        (np.ones(27), np.r_[1.0, np.full(26, 1e-16)], "span 1 of 27 components"),
        (np.ones(27), np.zeros(27), "no variance"),
        (np.zeros(27), np.geomspace(1, 0.1, 27), "no energy in the data's span"),
        (np.ones(27), np.r_[np.nan, np.ones(26)], "non-finite eigenvalues"),
        (np.r_[np.inf, np.ones(26)], np.ones(27), "non-finite energy"),
    ],
)
def test_undefined_flatness_is_not_applicable_with_its_reason(energy, eigenvalues, reason):
    from firstlayer.analysis import flatness_detail, response_flatness

    detail = flatness_detail(energy, eigenvalues)
    assert np.isnan(detail["flatness"]) and not detail["applicable"] and reason in detail["reason"]
    assert np.isnan(response_flatness(energy, eigenvalues))


def test_whitening_summary_not_applicable_and_partly_applicable():
    from firstlayer.analysis import whitening_frame, whitening_summary

    def bank(dataset: str, lam: np.ndarray, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        return pd.concat([pd.DataFrame({"dataset": dataset, "arch": "linear", "model": "linear", "labels": "true",
                                        "seed": seed, "kernel_size": 3, "kind": "W", "step": step,
                                        "component": np.arange(1, 28), "eigenvalue": lam,
                                        "energy": rng.uniform(0.5, 1.5, 27)}) for step in (0, 10)])  # fmt: skip

    full, one = np.geomspace(1, 0.01, 27), np.r_[1.0, np.zeros(26)]
    energy = pd.concat([bank("flat", one, 0), bank("flat", one, 1), bank("mixed", full, 0), bank("mixed", one, 1)])
    s = whitening_summary(whitening_frame(energy)).set_index("dataset")
    flat, mixed = s.loc["flat"], s.loc["mixed"]
    assert not flat["applicable"] and flat["n_seeds"] == 0 and np.isnan(flat["fraction_flatter_than_init"])
    assert np.isnan(flat["data"]) and flat["rank"] == 1 and "span 1 of 27" in flat["reason"]
    assert mixed["applicable"] and mixed["n_seeds"] == 1 and mixed["rank"] == 1 and mixed["components"] == 27
    assert mixed["reason"].startswith("1 of 2 runs not applicable: the patches span 1 of 27")


# ------------------------------------------------------------------------ label information


def test_label_information_is_zero_when_classes_share_their_mean_and_large_when_not():
    from firstlayer.analysis import label_information

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 3, 8, 8), dtype=np.uint8)
    # label = rotation by 180 degrees of the same images: identical class means up to the rotation of the mean
    same = np.concatenate([images, images[:, :, ::-1, ::-1]])
    labels = np.repeat([0, 1], 40)
    mean, std = np.array([0.5, 0.5, 0.5]), np.array([0.25, 0.25, 0.25])
    lam, basis = np.ones(27), np.eye(27)
    flat = label_information(same[:, :, :, :], labels, 3, mean, std, lam, basis)
    # colour classes: class 1 is much redder
    red = same.copy()
    red[40:, 0] = np.clip(red[40:, 0].astype(int) + 100, 0, 255).astype(np.uint8)
    coloured = label_information(red, labels, 3, mean, std, lam, basis)
    assert coloured["between_class_variance"].sum() > 100 * flat["between_class_variance"].sum()
    assert len(coloured) == 27 and (coloured["ratio"] >= 0).all()


def test_class_mean_patch_equals_the_mean_of_unfolded_patches():
    import torch

    from firstlayer.analysis import class_mean_patches
    from firstlayer.patches import normalise, unfold_patches

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(12, 3, 9, 7), dtype=np.uint8)
    labels = np.array([0, 1, 2] * 4)
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.3, 0.25])
    classes, means, counts = class_mean_patches(images, labels, 3, mean, std)
    for c in classes:
        x = normalise(torch.from_numpy(images[labels == c]), torch.tensor(mean), torch.tensor(std), torch.float64)
        assert np.allclose(means[c], unfold_patches(x, 3).mean(0).numpy(), atol=1e-12)
    assert counts.tolist() == [4, 4, 4]


# ------------------------------------------------------------------------ accuracy and the frozen control


def test_final_and_frozen_accuracy():
    from firstlayer.analysis import final_accuracy, frozen_accuracy

    rows = []
    for labels, acc in (("true", 0.8), ("frozen", 0.7), ("random", 0.1)):
        for seed in (0, 1):
            for step, value in ((0, 0.1), (10, acc + 0.01 * seed)):
                rows += [{"dataset": "d", "arch": "a", "labels": labels, "seed": seed, "step": step,
                          "metric": m, "value": value} for m in ("train_accuracy", "test_accuracy")]  # fmt: skip
    metrics = pd.DataFrame(rows)
    acc = final_accuracy(metrics).set_index("labels")
    assert acc.loc["true", "test_accuracy"] == pytest.approx(0.805) and acc.loc["true", "n_seeds"] == 2
    assert acc["chance"].isna().all() and (final_accuracy(metrics, {"d": 0.25})["chance"] == 0.25).all()
    frozen = frozen_accuracy(metrics)
    assert len(frozen) == 1 and frozen["difference"].iloc[0] == pytest.approx(-0.1)
    assert frozen_accuracy(metrics[metrics.labels != "frozen"]).empty


def test_precision_is_reported_and_mixed_precision_warned():
    from firstlayer.analysis import final_accuracy, precision_warnings

    rows = []
    for arch, labels, seed, precision in (("a", "true", 0, "bfloat16"), ("a", "random", 0, "float32"),
                                          ("b", "true", 0, "float32"), ("b", "true", 1, "float32")):  # fmt: skip
        rows += [{"dataset": "d", "arch": arch, "labels": labels, "seed": seed, "step": 5, "metric": m,
                  "value": 0.5, "precision": precision} for m in ("train_accuracy", "test_accuracy")]  # fmt: skip
    metrics = pd.DataFrame(rows)
    acc = final_accuracy(metrics).set_index(["arch", "labels"])["precision"].to_dict()
    assert acc == {("a", "random"): "float32", ("a", "true"): "bfloat16", ("b", "true"): "float32"}
    (warning,) = precision_warnings(metrics)
    assert warning.startswith("architecture 'a' ran in bfloat16 and float32") and "training.precision" in warning
    mixed_seeds = metrics.assign(precision=np.where(metrics.seed == 1, "bfloat16", metrics.precision))
    assert len(precision_warnings(mixed_seeds)) == 2
    assert final_accuracy(mixed_seeds).set_index("arch").loc["b", "precision"] == "bfloat16+float32"
    assert precision_warnings(metrics.drop(columns="precision")) == []
    assert "precision" not in final_accuracy(metrics.drop(columns="precision"))


# ------------------------------------------------------------------------ what two architectures differ in

LINEAR = {
    "model": "linear",
    "kernel_size": 3,
    "width": 64,
    "first_layer": None,
    "optimizer": "sgd",
    "lr": 0.002,
    "momentum": 0.9,
    "batch_size": 64,
    "steps": 300,
    "init_scale": 1.0,
    "seeds_per_job": 3,
    "eval_points": None,
}


def test_arch_relation_names_init_scale_architecture_and_training():
    small_init = {**LINEAR, "init_scale": 0.01}
    assert arch_relation(LINEAR, small_init) == arch_relation(small_init, LINEAR) == "init scale"
    # how jobs are grouped or evaluated does not make another network
    assert arch_relation(LINEAR, {**small_init, "seeds_per_job": 1, "eval_points": 5}) == "init scale"
    assert arch_relation(LINEAR, {**LINEAR, "model": "small_cnn"}) == "architecture"
    assert arch_relation(LINEAR, {**small_init, "width": 32}) == "architecture"  # a network setting wins
    assert arch_relation(LINEAR, {**LINEAR, "first_layer": "lowrank"}) == "architecture"
    assert arch_relation(LINEAR, {**LINEAR, "lr": 0.02}) == "training"
    assert arch_relation(LINEAR, {**small_init, "lr": 0.02}) == "training"  # init scale and more
    assert arch_relation(LINEAR, {**LINEAR, "optimizer": "adam"}) == "training"
    missing = {k: v for k, v in LINEAR.items() if k != "momentum"}  # defaults not filled: another setting
    assert arch_relation(LINEAR, missing) == "training"
    assert arch_relation(LINEAR, dict(LINEAR)) == "training"  # nothing differs: no network or init difference


def test_relation_with_architecture_entries():
    entries = {
        "linear": LINEAR,
        "linear_small_init": {**LINEAR, "init_scale": 0.01},
        "small_cnn": {**LINEAR, "model": "small_cnn", "width": 32},
        "linear_fast": {**LINEAR, "lr": 0.02},
    }
    a = pd.Series({"dataset": "x", "arch": "linear", "labels": "true", "seed": 0})
    assert relation(a, pd.Series({**a, "arch": "linear_small_init"}), entries) == "init scale"
    assert relation(a, pd.Series({**a, "arch": "linear_small_init", "seed": 1}), entries) == "init scale+seed"
    assert relation(a, pd.Series({**a, "arch": "small_cnn"}), entries) == "architecture"
    assert relation(a, pd.Series({**a, "arch": "linear_fast", "labels": "random"}), entries) == "training+labels"
    # without entries, or for an architecture without one (e.g. a pretrained model), the name stays 'architecture'
    assert relation(a, pd.Series({**a, "arch": "linear_small_init"})) == "architecture"
    assert relation(a, pd.Series({**a, "arch": "resnet18"}), entries) == "architecture"
    assert relation(a, a.copy(), entries) == "same"


def test_pairwise_consistency_labels_an_init_scale_pair(energy):
    entries = {"linear": LINEAR, "small_cnn": {**LINEAR, "init_scale": 0.01},
               "resnet18": {**LINEAR, "model": "resnet18", "kernel_size": 5}}  # fmt: skip
    pairs = pairwise_consistency(final_profiles(energy), entries)
    between = pairs[(pairs.relation != "trained vs init") & (pairs.kind == "W-W0")]
    one_network = between[{"linear", "small_cnn"} == between[["arch_a", "arch_b"]].apply(set, axis=1)]
    same_rest = one_network[[(r.dataset_a, r.labels_a, r.seed_a) == (r.dataset_b, r.labels_b, r.seed_b)
                             for r in one_network.itertuples()]]  # fmt: skip
    assert len(same_rest) == 8 and (same_rest.relation == "init scale").all()  # 2 datasets x 2 labels x 2 seeds
    assert "architecture" not in set(between.relation)  # resnet18 (k = 5) pairs with no k = 3 network
    plain = pairwise_consistency(final_profiles(energy))
    assert set(plain.relation) - set(pairs.relation) >= {"architecture"}
    assert len(plain) == len(pairs) and np.allclose(plain.correlation, pairs.correlation)
    assert "init scale" in set(consistency_summary(pairs, n_boot=50).relation)


def test_final_profiles_carry_the_bank_width_when_energy_has_it(energy):
    assert "filters" not in final_profiles(energy)
    widths = final_profiles(energy.assign(filters=np.where(energy.arch == "linear", 64, 32)))
    assert set(widths.loc[widths.arch == "linear", "filters"]) == {64}
    assert set(widths.loc[widths.arch != "linear", "filters"]) == {32}


# ------------------------------------------------------------------------ informative pairs in the summary


def annotated_seed_pairs() -> pd.DataFrame:
    """Seed pairs of one family, four seeds: the three pairs of seed 3 uninformative (e.g. its profile is early) and
    low; the rest high."""
    pairs = synthetic_seed_pairs(4, 0.0)
    with_3 = (pairs.seed_a == 3) | (pairs.seed_b == 3)
    return pairs.assign(
        correlation=np.where(with_3, 0.99, 0.8 + 0.01 * pairs.seed_a + 0.02 * pairs.seed_b),
        informative=pd.array(~with_3, dtype="boolean"),
        null_r=np.where(with_3, 0.97, 0.93),
    )


def test_consistency_summary_reports_the_informative_pairs():
    pairs = annotated_seed_pairs()
    s = consistency_summary(pairs, n_boot=300).iloc[0]
    informative = pairs[pairs.informative.astype(bool)]
    assert s["n"] == 6 and s["informative_n"] == 3 == len(informative)
    assert s["mean"] == pytest.approx(pairs.correlation.mean())
    assert s["informative_mean"] == pytest.approx(informative.correlation.mean())
    assert s["informative_mean"] < HIGH < s["mean"]  # all pairs would say yes; the informative ones do not
    assert s["informative_min"] == pytest.approx(informative.correlation.min())
    assert s["informative_max"] == pytest.approx(informative.correlation.max())
    assert s["informative_n_seeds"] == 3 and s["n_seeds"] == 4
    assert s["informative_ci_low"] <= s["informative_mean"] <= s["informative_ci_high"] < HIGH
    assert s["null_r"] == pytest.approx(pairs.null_r.mean())
    assert "informative_confidence" not in s and "informative_n_boot" not in s


def test_consistency_summary_without_informative_pairs_or_column():
    pairs = annotated_seed_pairs()
    # a second family (another architecture) none of whose pairs is informative
    other = pairs.assign(arch_a="cnn", arch_b="cnn", informative=pd.array([False] * len(pairs), dtype="boolean"))
    both = consistency_summary(pd.concat([pairs, other], ignore_index=True), n_boot=50).set_index("arch")
    row = both.loc["cnn"]
    assert row["n"] == 6 and row["informative_n"] == 0
    assert np.isnan(row["informative_mean"]) and np.isnan(row["informative_ci_low"])
    assert both.loc["linear", "informative_n"] == 3 and both["informative_n"].dtype == np.int64
    # NA (a pair without a regime, e.g. of kind W) counts as not informative; a null without values is NaN
    na = consistency_summary(pairs.assign(informative=pd.NA, null_r=np.nan), n_boot=50).iloc[0]
    assert na["informative_n"] == 0 and np.isnan(na["null_r"])
    plain = consistency_summary(pairs.drop(columns=["informative", "null_r"]), n_boot=50)
    assert not [c for c in plain.columns if c.startswith("informative_") or c == "null_r"]


def test_the_thresholds():
    assert HIGH == 0.9
    assert MATCHED_TAU_TOLERANCE == pytest.approx(np.log(np.sqrt(2.0)))
