"""Unit tests for firstlayer.pretrained: first-layer profiles of torchvision checkpoints, found or missing, nothing
downloaded; the `pretrained` config section; the Snakemake rule on a tiny dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from torch import nn

from firstlayer.analysis import LEARNING_MODES, PRETRAINED, final_profiles, whitening_frame
from firstlayer.config import ConfigError, kernel_sizes, load_schema, validate_config
from firstlayer.energy import TRAINED_STEP, energy_table
from firstlayer.modelspec import torchvision_weights
from firstlayer.patches import normalise, normalise_moments, patch_pca, raw_patch_moments, unfold_patches
from firstlayer.pretrained import (
    STATUS_COLUMNS,
    checkpoint_path,
    first_layer_weight,
    hub_checkpoint,
    input_normalisation,
    load_first_layer,
    pretrained_tables,
)
from firstlayer.theory import fit_frame

REPO = Path(__file__).resolve().parents[1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18 state_dict with random (seeded) weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18().state_dict()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 3, 16, 16), dtype=np.uint8)


def direct_profile(weight: torch.Tensor, images: np.ndarray, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and energies from first principles: float64 unfolded patches of the normalised images."""
    k = weight.shape[-1]
    mean, std = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    x = normalise(torch.from_numpy(images), mean, std, torch.float64)
    evals, evecs = np.linalg.eigh(np.cov(unfold_patches(x, k).numpy().T, bias=True))
    proj = weight.double().flatten(1).numpy() @ evecs[:, ::-1]
    return evals[::-1], np.sqrt((proj**2).mean(0))


def test_the_models_are_the_schema_enum_and_their_first_layers_are_found():
    names = load_schema()["$defs"]["pretrained_model"]["properties"]["name"]["enum"]
    assert "googlenet" not in names and "inception_v3" not in names  # their weights re-normalise the input
    assert first_layer_weight("resnet18") == ("conv1.weight", 7) and first_layer_weight("vgg16").kernel_size == 3
    assert first_layer_weight("vit_h_14") == ("conv_proj.weight", 14)


#: One model per torchvision family (the families share their first-layer code), plus vit_h_14's 14x14 patches.
REPRESENTATIVES = [
    "alexnet", "resnet18", "resnext50_32x4d", "wide_resnet50_2", "vgg11", "vgg11_bn", "densenet121", "squeezenet1_0",
    "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "efficientnet_v2_s",
    "shufflenet_v2_x0_5", "mnasnet0_5", "convnext_tiny", "swin_t", "swin_v2_t", "vit_b_16", "vit_h_14",
]  # fmt: skip


class _FirstCall(Exception):
    """Raised by a forward pre-hook to stop a forward pass at its first module."""


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_found_first_layer_against_the_torchvision_model(name):
    """Built on the meta device (no memory, no weights): the first module the image goes into is a 3-channel
    Conv2d whose weight has the found state_dict key and kernel size."""
    key, k = first_layer_weight(name)
    with torch.device("meta"):
        model = torchvision.models.get_model(name).eval()
        x = torch.empty(1, 3, 224, 224)
    calls: list[tuple[nn.Module, torch.Tensor]] = []

    def stop(module: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        calls.append((module, inp[0]))
        raise _FirstCall

    for m in model.modules():
        if not list(m.children()):
            m.register_forward_pre_hook(stop)
    with pytest.raises(_FirstCall):
        model(x)
    (first, inp) = calls[0]
    assert inp is x
    assert isinstance(first, nn.Conv2d) and first.in_channels == 3 and first.kernel_size == (k, k)
    assert dict(model.named_parameters())[key] is first.weight


def test_every_model_has_torchvision_weights_and_the_first_layer_of_a_tested_family_member():
    """Every listed model names torchvision weights, and its found first layer has the key and kernel size of a
    model of the same torchvision module that the test above checks (all on the meta device: about 10 s)."""
    names = load_schema()["$defs"]["pretrained_model"]["properties"]["name"]["enum"]
    module = {name: torchvision.models.get_model_builder(name).__module__ for name in names}
    for name in names:
        assert torchvision_weights(name, "DEFAULT").url.endswith(".pth"), name
        found = first_layer_weight(name)
        same = [r for r in REPRESENTATIVES if module[r] == module[name] and first_layer_weight(r).key == found.key]
        assert same, name


def test_profile_from_a_checkpoint_equals_the_profile_of_its_weights(tmp_path, resnet18_state, images):
    path = tmp_path / "my_resnet18.pth"
    torch.save(resnet18_state, path)
    raw = raw_patch_moments(images, 7)
    energy, status = pretrained_tables("resnet18", "IMAGENET1K_V1", "toy", path, raw)
    assert list(status.columns) == list(STATUS_COLUMNS) and len(status) == 1
    assert status.iloc[0].to_dict() == {"model": "resnet18", "weights": "IMAGENET1K_V1", "dataset": "toy",
                                        "kernel_size": 7, "checkpoint": str(path), "status": "ok"}  # fmt: skip
    # the trained runs' energy layout: one W profile at TRAINED_STEP, run keys, its own fit group
    assert len(energy) == 147 and energy.component.tolist() == list(range(1, 148))
    keys = {
        "dataset": "toy",
        "arch": "resnet18",
        "model": "torchvision:resnet18",
        "labels": PRETRAINED,
        "seed": 0,
        "kernel_size": 7,
        "step": TRAINED_STEP,
        "kind": "W",
        "normalisation": "torchvision resnet18 IMAGENET1K_V1",
    }
    assert (
        energy[list(keys)].drop_duplicates().iloc[0].to_dict() == keys
        and len(energy[list(keys)].drop_duplicates()) == 1
    )
    evals, want = direct_profile(resnet18_state["conv1.weight"], images, IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(energy.eigenvalue.to_numpy(), evals, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(energy.energy.to_numpy(), want, rtol=1e-8)
    # the model's normalisation matters: the dataset's own (here: mean 0.5, std 0.25) gives another profile
    _, other = direct_profile(resnet18_state["conv1.weight"], images, (0.5,) * 3, (0.25,) * 3)
    assert not np.allclose(energy.energy.to_numpy(), other, rtol=1e-3)


def test_pretrained_rows_join_the_runs_tables_and_stay_out_of_the_pairs(tmp_path, resnet18_state, images):
    """Beside a trained run at the same kernel size (another PCA: the dataset's normalisation), the pretrained
    profile is fitted in its own group, gets whitening rows, and joins the consistency pairs only when asked."""
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    raw = raw_patch_moments(images, 7)
    pretrained, _ = pretrained_tables("resnet18", "IMAGENET1K_V1", "toy", path, raw)
    mean, std = np.full(3, 0.5), np.full(3, 0.25)
    eigenvalues, basis = patch_pca(normalise_moments(raw, mean, std).covariance())
    rng = np.random.default_rng(0)
    run = {"dataset": "toy", "arch": "net", "model": "net", "labels": "true", "seed": 0, "kernel_size": 7}
    snaps = {0: rng.normal(size=(4, 147)), 5: rng.normal(size=(4, 147))}
    energy = pd.concat([energy_table(snaps, eigenvalues, basis, run), pretrained], ignore_index=True)
    fits = fit_frame(energy)
    assert len(fits[fits.labels == PRETRAINED]) == 2 and len(fits) == 2 * 4
    alone = fit_frame(pretrained)
    np.testing.assert_allclose(fits[fits.labels == PRETRAINED].tau.to_numpy(), alone.tau.to_numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="different PCA bases"):
        fit_frame(energy.drop(columns="normalisation"))
    whitening = whitening_frame(energy)
    assert whitening[whitening.labels == PRETRAINED].stage.tolist() == ["data", "trained"]
    assert set(final_profiles(energy).arch) == {"net"}
    assert set(final_profiles(energy, (*LEARNING_MODES, PRETRAINED)).arch) == {"net", "resnet18"}


def test_checkpoint_found_in_the_hub_cache(hub_dir, resnet18_state, images):
    expected = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"  # torchvision's file name for IMAGENET1K_V1
    assert hub_checkpoint("resnet18", "IMAGENET1K_V1") == expected
    assert checkpoint_path("resnet18", "IMAGENET1K_V1") == expected
    assert checkpoint_path("resnet18", "IMAGENET1K_V1", "/data/r18.pth") == Path("/data/r18.pth")
    expected.parent.mkdir(parents=True)
    torch.save({"state_dict": resnet18_state}, expected)  # a wrapped state_dict is accepted too
    energy, status = pretrained_tables(
        "resnet18", "DEFAULT", "toy", checkpoint_path("resnet18", "DEFAULT"), raw_patch_moments(images, 7)
    )
    assert status.status.iloc[0] == "ok" and status.weights.iloc[0] == "IMAGENET1K_V1" and len(energy) == 147


def test_missing_checkpoint_gives_a_status_row_and_downloads_nothing(hub_dir, images):
    where = checkpoint_path("resnet50", "IMAGENET1K_V2")
    energy, status = pretrained_tables("resnet50", "DEFAULT", "toy", where, raw_patch_moments(images, 7))
    assert list(status.columns) == list(STATUS_COLUMNS) and len(status) == 1
    assert status.status.iloc[0] == f"missing: {hub_dir / 'checkpoints' / 'resnet50-11ad3fa6.pth'}"
    assert status.weights.iloc[0] == "IMAGENET1K_V2" and status.kernel_size.iloc[0] == 7
    # no profile: an energy table of no rows, with the columns and types of one that has them
    assert energy.empty and energy.eigenvalue.dtype == energy.energy.dtype == np.float64
    assert energy.component.dtype == energy.step.dtype == np.int64 and "normalisation" in energy
    assert not hub_dir.exists()


def test_legacy_checkpoint_format_and_wrong_checkpoints(tmp_path, resnet18_state):
    legacy = tmp_path / "legacy.pth"  # torchvision's older files (e.g. vgg11-8a719046.pth) are not zip archives
    torch.save(resnet18_state, legacy, _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(load_first_layer(legacy, "resnet18"), resnet18_state["conv1.weight"].double().numpy())
    with pytest.raises(ValueError, match=r"legacy.pth: not a torchvision vgg11 state_dict.*features.0.weight"):
        load_first_layer(legacy, "vgg11")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(ValueError, match=r"bad.pth: conv1.weight has shape \(64, 3, 3, 3\).*\(K, 3, 7, 7\)"):
        load_first_layer(bad, "resnet18")


def test_input_normalisation_is_the_weights_preprocessing(tmp_path, resnet18_state):
    """ResNet-18 feeds its input to conv1 as it is: conv1 sees the weights' own preprocessing (GoogLeNet's and
    Inception-v3's networks re-normalise it: tests/faults/test_fault_profile.py)."""
    torch.save(resnet18_state, tmp_path / "r18.pth")
    mean, std = input_normalisation("resnet18", "IMAGENET1K_V1", tmp_path / "r18.pth")
    np.testing.assert_allclose(mean, IMAGENET_MEAN)
    np.testing.assert_allclose(std, IMAGENET_STD)
    with pytest.raises(ValueError, match=r"resnet18 has no weights 'IMAGENET1K_V9'.*IMAGENET1K_V1"):
        torchvision_weights("resnet18", "IMAGENET1K_V9")


# ------------------------------------------------------------------------ config


def config_with(pretrained: dict | None) -> dict:
    config = {
        "datasets": {"a": {"source": "embedded"}, "b": {"source": "embedded", "labels": "rotation"}},
        "architectures": {"lin": {"model": "linear", "lr": 0.1, "steps": 10}},
        "grid": [{"datasets": ["a"], "architectures": ["lin"]}],
    }
    if pretrained is not None:
        config["pretrained"] = pretrained
    return config


def test_pretrained_section_defaults_and_kernel_sizes():
    plain = validate_config(config_with(None))
    assert plain["pretrained"] == {"models": [], "in_consistency": False}
    without = {d: set(kernel_sizes(plain, d)) for d in ("a", "b")}
    assert 7 not in without["a"] | without["b"] and 4 not in without["b"]
    config = validate_config(config_with({"dataset": "a", "models": [{"name": "resnet18"}, {"name": "vgg11_bn"}]}))
    assert config["pretrained"]["models"][0] == {"name": "resnet18", "weights": "DEFAULT"}
    assert kernel_sizes(config, "a") == sorted(without["a"] | {3, 7})
    assert kernel_sizes(config, "b") == sorted(without["b"])
    config = validate_config(config_with({"dataset": "b", "models": [{"name": "convnext_tiny"}]}))
    assert kernel_sizes(config, "a") == sorted(without["a"]) and kernel_sizes(config, "b") == sorted(without["b"] | {4})


@pytest.mark.parametrize(
    ("pretrained", "expected"),
    [
        ({"models": [{"name": "resnet18"}]}, r"pretrained.dataset': is required.*a, b"),
        ({"dataset": "c", "models": [{"name": "resnet18"}]}, r"pretrained.dataset': 'c' is unknown.*a, b"),
        (
            {"dataset": "a", "models": [{"name": "resnet18"}, {"name": "resnet18"}]},
            r"models.1.name': resnet18 is listed",
        ),
        ({"dataset": "a", "models": [{"name": "resnet18", "weights": "IMAGENET1K_V2"}]}, r"models.0.weights'.*V1"),
        ({"dataset": "a", "models": [{"name": "googlenet"}]}, r"pretrained.models.0.name"),
        ({"dataset": "a", "models": [{"name": "resnet18", "url": "x"}]}, r"allowed keys here: name, path, weights"),
    ],
)
def test_pretrained_section_errors(pretrained, expected):
    with pytest.raises(ConfigError, match=expected):
        validate_config(config_with(pretrained))


# ------------------------------------------------------------------------ the rule, end to end


@pytest.mark.e2e
def test_rule_writes_profiles_and_missing_status(tmp_path, resnet18_state):
    """Only the pretrained targets of a tiny config: one checkpoint at a configured path, one missing."""
    checkpoint = tmp_path / "r18.pth"
    torch.save(resnet18_state, checkpoint)
    models = [{"name": "resnet18", "path": str(checkpoint)}, {"name": "vgg11", "path": str(tmp_path / "none.pth")}]
    config = config_with({"dataset": "b", "models": models})
    config["datasets"]["b"].update(photos=["chelsea", "coffee"], train_per_class=8, test_per_class=2)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--configfile", str(configfile), "--cores", "2", "results/tables/pretrained.parquet",
        "results/pretrained/resnet18/energy.parquet", "results/pretrained/vgg11/energy.parquet",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"missing: {tmp_path / 'none.pth'}" in proc.stderr
    status = pd.read_parquet(tmp_path / "results" / "tables" / "pretrained.parquet")
    assert status.set_index("model").status.to_dict() == {
        "resnet18": "ok",
        "vgg11": f"missing: {tmp_path / 'none.pth'}",
    }
    assert status.config_hash.notna().all()
    found = pd.read_parquet(tmp_path / "results" / "pretrained" / "resnet18" / "energy.parquet")
    missing = pd.read_parquet(tmp_path / "results" / "pretrained" / "vgg11" / "energy.parquet")
    assert len(found) == 147 and (found.labels == "pretrained").all() and found.energy.notna().all() and missing.empty
    # the same profile as from the dataset's images directly
    images = np.load(tmp_path / "results" / "data" / "b" / "images.npy")
    split = pd.read_parquet(tmp_path / "results" / "data" / "b" / "manifest.parquet")["split"].to_numpy()
    _, energy = direct_profile(resnet18_state["conv1.weight"], images[split == "train"], IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(found.energy.to_numpy(), energy, rtol=1e-8)
