"""Unit tests for firstlayer.analysis: final profiles, pairwise consistency and its summary, profile contrast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from firstlayer.analysis import (
    RUN_KEYS,
    consistency_summary,
    final_profiles,
    pairwise_consistency,
    profile_contrast,
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
