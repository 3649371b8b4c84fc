"""End to end: the Snakemake workflow on the smoke configuration, its outputs, and rerun-only-what-changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import SMOKE, planned_jobs, snakemake

from firstlayer.precision import native_bfloat16

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def test_every_output_is_made(smoke_run: Path) -> None:
    results = smoke_run / "results"
    for name in ("energy", "fits", "metrics", "consistency", "consistency_summary", "profile_contrast", "whitening",
                 "whitening_summary", "accuracy", "frozen_accuracy", "linear_check", "linear_check_summary",
                 "label_information", "label_information_summary", "label_information_gaussian",
                 "label_information_gaussian_summary", "replication", "matched_tau",
                 "matched_tau_summary", "tau_distance"):  # fmt: skip
        assert (results / "tables" / f"{name}.parquet").stat().st_size > 0
    for name in ("profiles", "fit_overlay", "consistency"):
        png = (results / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    for k, dataset in ((3, "photos"), (3, "rotations"), (5, "rotations"), (7, "rotations")):
        pca = pd.read_parquet(results / "patches" / dataset / f"k{k}" / "pca.parquet")
        assert len(pca) == 3 * k * k and pca["eigenvalue"].is_monotonic_decreasing
    assert not (results / "patches" / "photos" / "k5").exists()  # no network with 5x5 filters trains on photos
    assert not (results / "patches" / "photos" / "k7").exists()  # the user network's 7x7: only on rotations
    assert any((results / "logs" / "train").rglob("*.log"))
    assert any((results / "benchmarks" / "train").rglob("*.tsv"))


def test_sharded_patch_pca_equals_a_single_pass(smoke_run: Path) -> None:
    """3 shards per dataset (shard_size 40 of 96 training images), reduced: the covariance of one float64 pass."""
    from firstlayer.datasets import channel_stats
    from firstlayer.io import load_dataset
    from firstlayer.patches import normalise, unfold_patches

    results = smoke_run / "results"
    for k, dataset in ((3, "photos"), (5, "rotations")):
        shards = sorted((results / "patches" / dataset / f"k{k}" / "shards").glob("*.parquet"))
        assert [p.name for p in shards] == ["0.parquet", "1.parquet", "2.parquet"]
        data = load_dataset(results / "data" / dataset / "images.npy", results / "data" / dataset / "manifest.parquet")
        images, _ = data.split("train")
        mean, std = channel_stats(images)
        x = normalise(torch.from_numpy(images), torch.tensor(mean), torch.tensor(std), torch.float64)
        evals, evecs = np.linalg.eigh(np.cov(unfold_patches(x, k).numpy().T, bias=True))
        pca = pd.read_parquet(results / "patches" / dataset / f"k{k}" / "pca.parquet")
        np.testing.assert_allclose(pca.eigenvalue.to_numpy(), evals[::-1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.stack(pca.input_mean.iloc[0]), mean, rtol=1e-13)
        np.testing.assert_allclose(np.stack(pca.input_std.iloc[0]), std, rtol=1e-12)
        top = np.stack(pca.eigenvector.to_numpy())[0]
        assert abs(abs(top @ evecs[:, -1]) - 1) < 1e-9


def test_tables_are_tidy_with_provenance(smoke_run: Path) -> None:
    tables = smoke_run / "results" / "tables"
    energy = pd.read_parquet(tables / "energy.parquet")
    for col in ("dataset", "arch", "labels", "seed", "step", "kind", "component", "eigenvalue", "energy"):
        assert col in energy
    for col in ("config_hash", "firstlayer_version", "torch_version"):
        assert energy[col].notna().all()
    runs = energy.groupby(["dataset", "arch", "labels", "seed"]).ngroups
    assert runs == 4 * 2 + 2 + 1 + 1
    # linear trains both seeds in one job (seeds_per_job: 2): one file, both seeds in it
    grouped = pd.read_parquet(
        smoke_run / "results" / "train" / "photos" / "linear" / "true" / "seed0+1" / "snapshots.parquet"
    )
    assert sorted(grouped.seed.unique()) == [0, 1]
    assert not (smoke_run / "results" / "train" / "photos" / "linear" / "true" / "seed0").exists()
    assert set(energy["kind"]) == {"W", "W-W0"}
    assert (energy.loc[energy.kind == "W-W0", "step"] > 0).all()
    fits = pd.read_parquet(tables / "fits.parquet")
    assert len(fits) == 2 * energy.groupby(["dataset", "arch", "labels", "seed", "step", "kind"]).ngroups
    assert set(fits["formula"]) == {"one_parameter", "init_aware"}
    assert np.isfinite(fits["tau"]).all() and (fits["tau"] > 0).all()
    metrics = pd.read_parquet(tables / "metrics.parquet")
    assert {"loss", "train_accuracy", "test_accuracy"} <= set(metrics["metric"])
    # training.precision auto: the linear CNN in float32, the others as the machine computes bfloat16
    auto = "bfloat16" if native_bfloat16(torch.device("cpu")) else "float32"
    precision = metrics.groupby("model")["precision"].agg(set).to_dict()
    assert precision.pop("linear") == {"float32"} and precision and all(p == {auto} for p in precision.values())
    pairs = pd.read_parquet(tables / "consistency.parquet")
    assert {"seed", "labels", "dataset", "trained vs init"} <= set(pairs["relation"])


def test_seeds_agree_on_the_linear_network(smoke_run: Path) -> None:
    pairs = pd.read_parquet(smoke_run / "results" / "tables" / "consistency.parquet")
    seed_pairs = pairs[(pairs.kind == "W-W0") & (pairs.relation == "seed") & (pairs.arch_a == "linear")]
    assert len(seed_pairs) == 4
    assert seed_pairs["correlation"].min() > 0.8


def test_a_user_builder_is_trained_profiled_and_fitted(smoke_run: Path) -> None:
    """tests/configs/user_net.py:build (architecture user_net): its 7x7 stride-2 first layer found by running it,
    profiled in the 7x7 patch PCA (147 components) at every snapshot, both formulas fitted, its whitening measured."""
    tables = smoke_run / "results" / "tables"
    energy = pd.read_parquet(tables / "energy.parquet")
    user = energy[energy.arch == "user_net"]
    assert set(user["model"]) == {"tests/configs/user_net.py:build"} and set(user["kernel_size"]) == {7}
    assert set(user["kind"]) == {"W", "W-W0"} and user["component"].max() == 147
    assert user.groupby(["step", "kind"]).size().eq(147).all() and user["step"].max() == 8
    snapshots = pd.read_parquet(smoke_run / "results" / "train" / "rotations" / "user_net" / "true" / "seed0" /
                                "snapshots.parquet")  # fmt: skip
    assert snapshots["filter"].nunique() == 6 and snapshots["position"].nunique() == 147  # width 6, 7x7x3
    fits = pd.read_parquet(tables / "fits.parquet")
    fits = fits[fits.arch == "user_net"]
    assert len(fits) == 2 * user.groupby(["step", "kind"]).ngroups and np.isfinite(fits["tau"]).all()
    whitening = pd.read_parquet(tables / "whitening.parquet")
    assert set(whitening.loc[whitening.arch == "user_net", "stage"]) == {"data", "init", "trained"}
    log = (smoke_run / "results" / "logs" / "train" / "rotations" / "user_net" / "true" / "seed0.log").read_text()
    assert "8 steps" in log


def test_the_api_profile_and_fit_equal_the_workflows(smoke_run: Path) -> None:
    """firstlayer.analyze on one run of the smoke grid (the user network's, at its last snapshot: its network built
    as the workflow builds it, the trained first layer loaded from the run's snapshots, the init from its step 0, on
    the dataset it trained on) gives the workflow's energy profiles and fits of that run. Both take the exact integer
    patch moments, so only float64 rounding of the eigendecomposition and projections separates them (rtol 1e-9),
    and the one-parameter fit searches a fixed τ grid (the same τ). The init-aware fit refines (τ, β) locally; for a
    profile fitted at the τ grid's bound (at_bound: W after 8 steps is still nearly its flat init, r = 0.12) the
    score surface is flat there, and rounding picks another point of nearly the same correlation (1e-6 apart,
    measured): for those only the correlation is compared, at rtol 1e-5."""
    import firstlayer
    from firstlayer.config import validate_config
    from firstlayer.energy import snapshot_arrays
    from firstlayer.io import load_dataset
    from firstlayer.models import first_layer
    from firstlayer.modelspec import build_model

    results = smoke_run / "results"
    snaps = snapshot_arrays(pd.read_parquet(results / "train" / "rotations" / "user_net" / "true" / "seed0" /
                                            "snapshots.parquet"))  # fmt: skip
    last = max(snaps)
    arch = validate_config(yaml.safe_load(SMOKE.read_text()))["architectures"]["user_net"]
    data = load_dataset(
        results / "data" / "rotations" / "images.npy", results / "data" / "rotations" / "manifest.parquet"
    )
    net = build_model(arch["model"], num_classes=data.num_classes, kernel_size=arch["kernel_size"], width=arch["width"])
    layer = first_layer(net, arch["model"], arch["first_layer"])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(snaps[last]).view_as(layer.weight))
    init = torch.from_numpy(snaps[0]).view_as(layer.weight)
    profile = firstlayer.analyze(net, data, init=init, progress=False)
    assert profile.energy["first_layer"].iloc[0] == arch["first_layer"] and profile.kernel_size == 7

    run = {"dataset": "rotations", "arch": "user_net", "labels": "true", "seed": 0, "step": last}
    energy = pd.read_parquet(results / "tables" / "energy.parquet")
    fits = pd.read_parquet(results / "tables" / "fits.parquet")
    energy = energy[(energy[list(run)] == pd.Series(run)).all(axis=1)]
    fits = fits[(fits[list(run)] == pd.Series(run)).all(axis=1)]
    for kind in ("W", "W-W0"):
        ours = profile.energy[profile.energy.kind == kind].sort_values("component")
        theirs = energy[energy.kind == kind].sort_values("component")
        assert len(ours) == len(theirs) == 147
        np.testing.assert_allclose(ours["eigenvalue"], theirs["eigenvalue"], rtol=1e-9)
        np.testing.assert_allclose(ours["energy"], theirs["energy"], rtol=1e-9)
        for formula in ("one_parameter", "init_aware"):
            [theirs_fit] = fits[(fits.kind == kind) & (fits.formula == formula)].to_dict("records")
            ours_fit = profile.fit(kind, formula)
            assert ours_fit["at_bound"] == theirs_fit["at_bound"]
            flat = formula == "init_aware" and theirs_fit["at_bound"]
            for column in ("correlation",) if flat else ("tau", "beta", "correlation"):
                np.testing.assert_allclose(ours_fit[column], theirs_fit[column], rtol=1e-5 if flat else 1e-9,
                                           err_msg=f"{kind} {formula} {column}")  # fmt: skip


def test_rerun_does_nothing(smoke_run: Path) -> None:
    proc = snakemake(smoke_run, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_editing_one_architecture_reruns_only_its_jobs(smoke_run: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(SMOKE.read_text())
    config["architectures"]["small_cnn"]["lr"] = 0.05
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(smoke_run, "--dry-run", configfile=edited)
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc.stdout)
    per_run = [(rule, wc) for rule, wc in jobs if wc]
    assert sorted(per_run) == sorted(
        (rule, f"dataset=rotations, arch=small_cnn, labels=true, seeds={seed}")
        for rule in ("train", "energy_profile")
        for seed in (0, 1)
    )
    aggregate = {rule for rule, wc in jobs if not wc}
    # the tables and figures built from all runs re-run; nothing about the data, patches or theory does
    assert {"collect_energy", "collect_metrics", "fit_formula", "consistency", "matched_tau", "whitening", "accuracy",
            "replication", "plot_profiles", "all"} <= aggregate  # fmt: skip
    assert not aggregate & {"prepare_dataset", "patch_shard", "patch_pca", "linear_check", "label_information",
                            "collect_theory"}  # fmt: skip


def test_bad_config_stops_before_any_job(tmp_path: Path) -> None:
    config = yaml.safe_load(SMOKE.read_text())
    config["architectures"]["linear"]["lr"] = -0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--dry-run", configfile=bad)
    assert proc.returncode != 0
    assert "architectures.linear.lr" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_theory_and_analysis_tables(smoke_run: Path) -> None:
    tables = smoke_run / "results" / "tables"
    check = pd.read_parquet(tables / "linear_check_summary.parquet")
    assert set(check["dataset"]) == {"photos", "rotations"}
    assert (check["max_relative_weight_error"] < 1e-9).all()
    assert (check.groupby("dataset")["step"].nunique() >= 5).all()
    fits = pd.read_parquet(tables / "fits.parquet")
    wide = fits.pivot_table(index=["dataset", "arch", "labels", "seed", "step", "kind"], columns="formula",
                            values="correlation")  # fmt: skip
    assert (wide["init_aware"] >= wide["one_parameter"] - 1e-9).all()
    info_all = pd.read_parquet(tables / "label_information_summary.parquet")
    info = info_all[info_all.kernel_size == 3].set_index("dataset")
    # label = source photo: classes differ in mean colour; label = rotation: they hardly do
    assert info.loc["photos", "between_class_share"] > 3 * info.loc["rotations", "between_class_share"]
    # beyond class means: the Gaussian label information of both orders, per dataset and kernel size, with its null
    gaussian = pd.read_parquet(tables / "label_information_gaussian_summary.parquet")
    keys = ["dataset", "kernel_size"]
    assert sorted(map(tuple, gaussian[keys].to_numpy())) == sorted(map(tuple, info_all[keys].to_numpy()))
    assert (gaussian["draws"] == 20).all() and (gaussian["second_order_null_std"] > 0).all()
    k3 = gaussian[gaussian.kernel_size == 3].set_index("dataset")
    # photos' classes differ in mean colour far beyond the permuted labels; rotations' classes do not
    assert k3.loc["photos", "first_order_z"] > 5 and k3.loc["rotations", "first_order_z"] < 2
    components = pd.read_parquet(tables / "label_information_gaussian.parquet")
    assert len(components) == (3 * gaussian["kernel_size"] ** 2).sum()
    whitening = pd.read_parquet(tables / "whitening.parquet")
    assert set(whitening["stage"]) == {"data", "init", "trained"} and whitening["flatness"].between(0, 1).all()
    summary = pd.read_parquet(tables / "consistency_summary.parquet")
    assert (summary["ci_low"] <= summary["ci_high"]).all()
    assert (summary["min"] - 1e-12 <= summary["ci_low"]).all() and (summary["ci_high"] <= summary["max"] + 1e-12).all()
    replication = pd.read_parquet(tables / "replication.parquet")
    assert len(replication) >= 8 and replication["measured"].str.len().gt(0).all()
    markdown = (tables / "replication.md").read_text()
    assert markdown.count("\n|") >= len(replication) + 1


@pytest.mark.parametrize(
    "name", ["config.yaml", "configs/embedded_full.yaml", "configs/embedded_long.yaml", "configs/cifar_paper.yaml"]
)
def test_shipped_configs_plan_their_whole_grid(name: str, tmp_path: Path) -> None:
    """Every shipped config validates and dry-runs (no data needed): one train job per job of the grid, each with
    its resources (jobs after the patch statistics wait for the prepare_dataset checkpoint)."""
    from firstlayer.config import train_jobs, validate_config

    path = REPO / name
    jobs = train_jobs(validate_config(yaml.safe_load(path.read_text())))
    proc = snakemake(tmp_path, "--dry-run", configfile=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = planned_jobs(proc.stdout)
    assert sum(rule == "train" for rule, _ in planned) == len(jobs)
    lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("resources:")]
    assert sum("mem_mb=" in line and "runtime=" in line for line in lines) >= len(jobs)


@pytest.mark.parametrize("name", ["config.yaml", "configs/embedded_long.yaml"])
def test_shipped_configs_can_decide_true_vs_random_where_labels_carry_nothing(name: str) -> None:
    """The default and the long config train true and random labels on `polarity` (no label information at either
    order) with enough seeds for a verdict: a true-vs-random row pairs runs of one seed, and a verdict needs
    MIN_PAIRS pairs."""
    from firstlayer.config import train_jobs, validate_config
    from firstlayer.replication import MIN_PAIRS

    config = validate_config(yaml.safe_load((REPO / name).read_text()))
    polarity = {d for d, spec in config["datasets"].items() if spec.get("labels") == "polarity"}
    seeds: dict[tuple[str, str, str], set[int]] = {}
    for job in train_jobs(config):
        if job.dataset in polarity:
            seeds.setdefault((job.dataset, job.arch, job.labels), set()).update(job.seeds)
    families = {(d, a) for d, a, _ in seeds}
    assert families, f"{name} trains nothing on polarity labels"
    for d, a in families:
        paired = seeds.get((d, a, "true"), set()) & seeds.get((d, a, "random"), set())
        assert len(paired) >= MIN_PAIRS, f"{name}: {a} on {d} has {len(paired)} true/random seed pairs"
