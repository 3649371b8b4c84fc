"""Unit tests for firstlayer.profile (``firstlayer.analyze``): the API's profile, fits and flatness equal the
workflow's for the same run; every form of data, model, init and normalisation; errors."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from PIL import Image
from torch import nn

import firstlayer
from firstlayer.analysis import whitening_frame
from firstlayer.checkpoints import CheckpointError
from firstlayer.datasets import (
    EMBEDDED_PRESETS,
    DatasetError,
    channel_stats,
    make_embedded_dataset,
    normalisation_frame,
    normalisation_values,
    shard_bounds,
)
from firstlayer.discovery import FirstLayerError
from firstlayer.energy import energy_table, snapshot_arrays
from firstlayer.io import pca_basis, save_dataset
from firstlayer.modelspec import LoadedModel
from firstlayer.patches import (
    moments_from_frames,
    normalise,
    normalise_moments,
    pca_frame,
    raw_moments,
    shard_moments_frame,
    unfold_patches,
)
from firstlayer.profile import ProfileError, analyze, load_images
from firstlayer.runs import snapshots_frame
from firstlayer.settings import TrainSettings, log_schedule
from firstlayer.theory import fit_frame
from firstlayer.train import init_model, train

REPO = Path(__file__).resolve().parents[1]
KEYS = {"dataset": "rotations", "arch": "small_cnn_k5", "model": "small_cnn", "labels": "true", "seed": 0}


@pytest.fixture(scope="module")
def dataset():
    return make_embedded_dataset(labels="rotation", train_per_class=24, test_per_class=8, seed=1)


@pytest.fixture(scope="module")
def run(dataset):
    """A small CNN (5x5 first layer, padding 2) trained for 12 steps as the workflow's train job trains it."""
    (x, y), (xt, yt) = dataset.split("train"), dataset.split("test")
    mean, std = channel_stats(x)
    model = init_model("small_cnn", num_classes=4, kernel_size=5, width=8, image_size=32, seed=0)
    settings = TrainSettings(steps=12, lr=0.05, batch_size=16, snapshot_steps=log_schedule(12, 3), eval_steps=(12,),
                             device="cpu", precision="float32")  # fmt: skip
    data = (torch.from_numpy(x), torch.from_numpy(y)), (torch.from_numpy(xt), torch.from_numpy(yt))
    result = train(model, "small_cnn", *data, mean, std, settings, log=lambda _: None)
    return model, result


def workflow_tables(dataset, result, k: int = 5) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """energy, fits and whitening as the workflow's scripts compute them: patch_shard (two shards), patch_pca,
    energy_profile, fit_formula (config.yaml's fit section) and whitening."""
    images, _ = dataset.split("train")
    n = len(images)
    frames = [shard_moments_frame(*raw_moments(images[a:b], k), kernel_size=k, start=a, stop=b, images=n)
              for a, b in shard_bounds(n, n // 2 + 1)]  # fmt: skip
    mean, std = normalisation_values(normalisation_frame(images, "rotations"))  # the dataset_normalisation job
    pca = pca_frame(
        normalise_moments(moments_from_frames(frames, "patch"), mean, std), dataset="rotations", kernel_size=k
    )
    eigenvalues, basis = pca_basis(pca)
    snapshots = snapshots_frame(result.snapshots).assign(**KEYS)
    energy = energy_table(snapshot_arrays(snapshots), eigenvalues, basis, {**KEYS, "kernel_size": k})
    fit = yaml.safe_load((REPO / "config.yaml").read_text())["fit"]
    return energy, fit_frame(energy, **fit), whitening_frame(energy)


def test_the_api_equals_the_workflow_for_the_same_run(dataset, run) -> None:
    model, result = run
    last = max(result.snapshots)
    assert torch.equal(model.features[0].weight.detach().cpu(), result.snapshots[last])
    energy, fits, whitening = workflow_tables(dataset, result)
    profile = firstlayer.analyze(model, dataset, init=result.snapshots[0], progress=False)
    assert profile.layer == "features.0: 8 filters 5x5, stride 1, padding 2"
    for kind in ("W", "W-W0"):
        want = energy[(energy.kind == kind) & (energy.step == last)].sort_values("component")
        got = profile.energy[profile.energy.kind == kind].sort_values("component")
        np.testing.assert_allclose(got.eigenvalue, want.eigenvalue, rtol=1e-12)
        np.testing.assert_allclose(got.energy, want.energy, rtol=1e-12)
        for formula in ("one_parameter", "init_aware"):
            w = fits[(fits.kind == kind) & (fits.step == last) & (fits.formula == formula)].iloc[0]
            g = profile.fit(kind, formula)
            np.testing.assert_allclose([g.tau, g.beta, g.correlation], [w.tau, w.beta, w.correlation], rtol=1e-9)
            assert g.at_bound == w.at_bound
    final = whitening[(whitening.stage == "data") | (whitening.step == 0) | whitening.final].set_index("stage")
    stages = ["data", "init", "trained"]
    np.testing.assert_allclose(profile.whitening.set_index("stage").flatness, final.flatness[stages], rtol=1e-12)


def test_presets_are_the_default_experiments_datasets() -> None:
    datasets = yaml.safe_load((REPO / "config.yaml").read_text())["datasets"]
    assert set(datasets) <= set(EMBEDDED_PRESETS)
    for name, spec in datasets.items():
        assert spec == {"source": "embedded", **EMBEDDED_PRESETS[name]}, name
    assert EMBEDDED_PRESETS["rotations"]["labels"] == "rotation"  # kept available beside the default's datasets


def direct_profile(weight: torch.Tensor, images: np.ndarray, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and energies from first principles: float64 unfolded stride-1 patches of the normalised images."""
    k = weight.shape[-1]
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in (mean, std))
    x = normalise(torch.from_numpy(images), mean, std, torch.float64)
    evals, evecs = np.linalg.eigh(np.cov(unfold_patches(x, k).numpy().T, bias=True))
    proj = weight.double().flatten(1).numpy() @ evecs[:, ::-1]
    return evals[::-1], np.sqrt((proj**2).mean(0))


class StridedStem(nn.Module):
    """A 7x7 stride-2, padding-3 stem (as in ImageNet ResNets): its patches are still all stride-1 7x7 windows."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 7, stride=2, padding=3)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x).mean((2, 3)))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(6, 3, 12, 12), dtype=np.uint8)


def test_given_normalisation_and_a_strided_layer_match_first_principles(images) -> None:
    torch.manual_seed(0)
    net = StridedStem()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    profile = analyze(net, images, mean=mean, std=std, progress=False)
    evals, energy = direct_profile(net.stem.weight.detach(), images, mean, std)
    np.testing.assert_allclose(profile.energy.eigenvalue, evals, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(profile.energy.energy, energy, rtol=1e-7)
    assert profile.normalisation == "given" and profile.patches == 6 * 6 * 6
    assert list(profile.energy.kind.unique()) == ["W"] and list(profile.whitening.stage) == ["data", "trained"]


def test_the_data_normalises_when_nothing_is_recorded_and_metadata_wins_over_the_data(images) -> None:
    torch.manual_seed(0)
    net = StridedStem()
    profile = analyze(net, images, progress=False)
    np.testing.assert_allclose(profile.mean, channel_stats(images)[0], rtol=1e-12)
    assert profile.normalisation == "the data's (none recorded with the weights)"
    loaded = LoadedModel("mine", net, mean=np.array([0.5] * 3), std=np.array([0.25] * 3), normalisation="recorded")
    profile = analyze(loaded, images, progress=False)
    assert profile.normalisation == "recorded" and profile.mean.tolist() == [0.5] * 3


def test_every_form_of_init_gives_the_same_change(tmp_path: Path, images) -> None:
    torch.manual_seed(0)
    w0, net = StridedStem(), StridedStem()
    torch.save({"state_dict": {f"model.{k}": v for k, v in w0.state_dict().items()}}, tmp_path / "init.ckpt")
    forms = [w0, tmp_path / "init.ckpt", str(tmp_path / "init.ckpt"), w0.state_dict(), w0.stem.weight.detach(),
             w0.stem.weight.detach().numpy(), LoadedModel("w0", w0)]  # fmt: skip
    changes = [analyze(net, images, init=f, progress=False).energy.query("kind == 'W-W0'").energy for f in forms]
    direct = direct_profile(net.stem.weight.detach() - w0.stem.weight.detach(), images, *channel_stats(images))[1]
    for change in changes:
        np.testing.assert_allclose(change, direct, rtol=1e-7)
    with pytest.raises(
        ProfileError, match=r"the init's first layer has shape \(6, 3, 5, 5\), the model's \(6, 3, 7, 7\)"
    ):
        analyze(net, images, init=torch.zeros(6, 3, 5, 5), progress=False)


def test_a_checkpoint_without_its_model(tmp_path: Path, images) -> None:
    torch.manual_seed(0)
    net = StridedStem()
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, tmp_path / "dp.pt")
    by_module = analyze(net, images, progress=False)
    for checkpoint in (tmp_path / "dp.pt", net.state_dict()):
        profile = analyze(checkpoint, images, progress=False)
        np.testing.assert_allclose(profile.energy.energy, by_module.energy.energy, rtol=1e-12)
        assert profile.found_by == "the checkpoint's only 3-channel conv weight"
    two = {"a.weight": torch.randn(4, 3, 3, 3), "b.weight": torch.randn(4, 3, 3, 3)}
    with pytest.raises(CheckpointError, match="several 3-channel conv weights"):
        analyze(two, images, progress=False)
    assert analyze(two, images, first_layer="b", progress=False).energy.kernel_size.iloc[0] == 3


def test_data_forms(tmp_path: Path, dataset) -> None:
    train_images, _ = dataset.split("train")
    assert np.array_equal(load_images(dataset).images, train_images)
    assert np.array_equal(load_images(torch.from_numpy(train_images)).images, train_images)
    save_dataset(dataset, tmp_path / "prepared" / "images.npy", tmp_path / "prepared" / "manifest.parquet")
    prepared = load_images(tmp_path / "prepared")
    assert np.array_equal(prepared.images, train_images) and prepared.num_classes == 4
    for label in ("cats", "dogs"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(train_images[i].transpose(1, 2, 0)).save(tmp_path / "folder" / label / f"{i}.png")
    folder = load_images(str(tmp_path / "folder"), image_size=16)
    assert folder.images.shape[1:] == (3, 16, 16) and folder.num_classes == 2
    with pytest.raises(
        DatasetError, match=r"unknown embedded dataset 'cifar'; allowed: photos, textures, polarity, rotations"
    ):
        load_images("embedded:cifar")
    with pytest.raises(
        DatasetError,
        match=r"is neither embedded:photos, embedded:textures, embedded:polarity, embedded:rotations nor an existing",
    ):
        load_images(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"must be \(N, 3, H, W\) uint8, got float32"):
        load_images(np.zeros((2, 3, 8, 8), dtype=np.float32))


def test_normalisation_errors(images) -> None:
    net = StridedStem()
    with pytest.raises(ProfileError, match="give both mean and std"):
        analyze(net, images, mean=(0.5, 0.5, 0.5), progress=False)
    with pytest.raises(ProfileError, match=r"in \[0, 1\] pixel units \(x / 255\)"):
        analyze(net, images, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4), progress=False)


def test_errors_of_the_first_layer_reach_the_caller(images) -> None:
    with pytest.raises(FirstLayerError, match="has no module 'trunk'"):
        analyze(StridedStem(), images, first_layer="trunk", progress=False)


def test_summary_plot_and_progress(dataset, run) -> None:
    model, result = run
    lines = []
    profile = analyze(model, dataset, init=result.snapshots[0], progress=lines.append)
    assert any("exact moments of the 5x5 patches of 96 images" in line for line in lines)
    summary = profile.summary()
    for text in ("first layer    features.0: 8 filters 5x5", "found by forward hooks", "fit of W-W0", "init-aware τ",
                 "flatness       data", ": the data's (none recorded"):  # fmt: skip
        assert text in summary, text
    fig = profile.plot()
    assert len(fig.axes) == 2 and "features.0" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(KeyError, match="no one_parameter fit of W-W0; kinds here: W"):
        analyze(model, dataset, progress=False).fit("W-W0")


def test_a_patch_embedding_is_a_first_layer(images) -> None:
    """A ViT's patch embedding: k x k filters at stride k; the profile takes all stride-1 k x k patches."""
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=12, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8,
                                               mlp_dim=8, num_classes=2)  # fmt: skip
    profile = analyze(vit, images, progress=False)
    assert profile.layer == "conv_proj: 8 filters 4x4, stride 4, padding 0"
    assert profile.patches == 6 * 9 * 9 and len(profile.energy) == 48


def test_a_model_spec_string_is_built_at_random_init(images) -> None:
    profile = analyze("torchvision:resnet18", images, progress=False)
    assert (profile.model, profile.weights) == ("torchvision:resnet18", "at random init (seed 0)")
    assert profile.kernel_size == 7 and 0 < profile.flatness("trained") < 1
    assert profile.flatness("data") == profile.whitening.flatness.iloc[0]
    with pytest.raises(CheckpointError, match=r"checkpoint resnet99\.pt does not exist"):
        analyze("resnet99.pt", images, progress=False)


def test_a_network_that_normalises_inside_is_profiled_as_its_first_layer_sees(images) -> None:
    """A per-channel normalisation inside the network (a learned one: its buffers come with the weights) is found by
    running the network, not by its name: the profile equals that of the bare layer at the composed mean and std."""

    class Inside(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
            self.register_buffer("gain", torch.ones(1, 3, 1, 1))
            self.stem = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.stem((x - self.shift) * self.gain).mean((1, 2, 3))

    trained = Inside()
    trained.shift.copy_(torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1))
    trained.gain.copy_(torch.tensor([2.0, 0.5, 1.0]).view(1, 3, 1, 1))
    mean, std = np.full(3, 0.5), np.full(3, 0.25)
    loaded = LoadedModel("inside", Inside(), trained.state_dict(), "trained")  # the module itself at its init
    profile = analyze(loaded, images, first_layer="stem", mean=mean, std=std, progress=False)
    want_std = std / np.array([2.0, 0.5, 1.0])
    want_mean = mean + np.array([0.1, -0.2, 0.3]) * std
    np.testing.assert_allclose(profile.std, want_std, rtol=1e-6)
    np.testing.assert_allclose(profile.mean, want_mean, rtol=1e-6)
    assert "not the input's mean [0.5, 0.5, 0.5]" in profile.summary()
    bare = analyze({"stem.weight": trained.stem.weight}, images, mean=want_mean, std=want_std, progress=False)
    np.testing.assert_allclose(profile.energy.energy, bare.energy.energy, rtol=1e-6)
