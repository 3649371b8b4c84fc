"""Faults of `firstlayer profile` and ``firstlayer.analyze`` on pretrained and user weights: a network that
re-normalises its input before its first layer, a checkpoint of another first layer, a kernel larger than the
images, and checkpoints that torch reads only partly (safetensors missing, pickled extras, the legacy format)."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from firstlayer.checkpoints import CheckpointError, read_checkpoint
from firstlayer.cli import main
from firstlayer.discovery import find_first_layer
from firstlayer.modelspec import (
    InputTransformError,
    LoadedModel,
    hub_checkpoint,
    input_transform,
    load_model,
    torchvision_weights,
    weights_model,
    weights_normalisation,
)
from firstlayer.pretrained import input_normalisation
from firstlayer.profile import ProfileError, analyze

#: torchvision's classifiers whose weights make the network re-normalise its input before the first conv.
TRANSFORMING = {"googlenet", "inception_v3"}
CLASSIFIERS = sorted(torchvision.models.list_models(module=torchvision.models))
#: End-to-end with fake weights on disk: the two that transform and small members of other families.
END_TO_END = ["googlenet", "inception_v3", "resnet18", "squeezenet1_1", "mobilenet_v3_small"]


def images(side: int = 16, n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 3, side, side), dtype=np.uint8)


def plain_kwargs(name: str) -> dict:
    """What a weights=None build needs to have the keys of the build with DEFAULT weights (ViT: their image side),
    and GoogLeNet and Inception-v3 no slow scipy init."""
    side = torchvision_weights(name, "DEFAULT").meta["min_size"][0]
    return {"image_size": side} if name.startswith("vit_") else {"init_weights": False} if name in TRANSFORMING else {}


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Parameters and buffers go to the meta device as they are registered (no memory, no init cost) while the
    rest of a build runs on the CPU (a RegNet computes its widths with torch, which the meta device cannot)."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        register_parameter(self, name, None if param is None else nn.Parameter(param.to("meta"), param.requires_grad))

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    with (
        mock.patch.object(nn.Module, "register_parameter", parameter),
        mock.patch.object(nn.Module, "register_buffer", buffer),
    ):
        yield


# ------------------------------------------------------------------------ 6: the normalisation the layer sees


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_built_as_its_weights_configure_it_transforms_its_input_iff_expected(name):
    """Structural, all of torchvision's classifiers (parameters on the meta device: a fraction of a second each):
    the network its DEFAULT weights configure is probed with random images; only GoogLeNet and Inception-v3 map
    their input, and to what their first conv sees: (x - 0.5) / 0.5 in pixel units."""
    entry = torchvision_weights(name, "DEFAULT")
    with parameters_on_meta():
        plain = torchvision.models.get_model(name, weights=None, **plain_kwargs(name))
        configured = weights_model(name, entry, plain.state_dict())
    layer = find_first_layer(plain, image_size=224).name
    mean, std = weights_normalisation(entry)
    transform = input_transform(configured, layer, mean, std, sides=(entry.meta["min_size"][0],))
    assert (transform is not None) == (name in TRANSFORMING), name
    if transform is not None:
        seen_mean, seen_std = transform.normalisation(mean, std)
        np.testing.assert_allclose(seen_mean, 0.5, atol=1e-6)
        np.testing.assert_allclose(seen_std, 0.5, atol=1e-6)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """torch.hub's cache in a temporary folder, holding fake (random, seeded) DEFAULT weights of END_TO_END in
    torchvision's on-disk format under torchvision's file names."""
    previous = torch.hub.get_dir()
    root = tmp_path_factory.mktemp("hub")
    torch.hub.set_dir(str(root))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name in END_TO_END:
            path = hub_checkpoint(torchvision_weights(name, "DEFAULT"))
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(torchvision.models.get_model(name, weights=None, **plain_kwargs(name)).state_dict(), path)
    yield root
    torch.hub.set_dir(previous)


@pytest.mark.parametrize("name", END_TO_END)
def test_pretrained_weights_are_profiled_in_the_normalisation_their_first_layer_sees(hub, name):
    """From the hub cache, both paths: ``analyze`` of load_model(DEFAULT) and the workflow's input_normalisation.
    GoogLeNet's and Inception-v3's first conv sees (x - 0.5) / 0.5, not ImageNet's mean and std, and says so."""
    entry = torchvision_weights(name, "DEFAULT")
    imagenet_mean, imagenet_std = weights_normalisation(entry)
    want = (np.full(3, 0.5), np.full(3, 0.5)) if name in TRANSFORMING else (imagenet_mean, imagenet_std)
    mean, std = input_normalisation(name, "DEFAULT")
    np.testing.assert_allclose(mean, want[0], atol=1e-6)
    np.testing.assert_allclose(std, want[1], atol=1e-6)
    profile = analyze(load_model(f"torchvision:{name}", weights="DEFAULT"), images(), progress=False)
    np.testing.assert_allclose(profile.mean, want[0], atol=1e-6)
    np.testing.assert_allclose(profile.std, want[1], atol=1e-6)
    line = next(x for x in profile.summary().splitlines() if x.startswith("normalisation"))
    if name in TRANSFORMING:
        assert "[0.5, 0.5, 0.5]" in line and "not the input's mean [0.485, 0.456, 0.406]" in line, line
        assert "maps its input x to a·x + b per channel" in line and "the weights' own" in line, line
    else:
        assert line.endswith(f"the weights' own (torchvision {entry})"), line


def test_a_network_that_mixes_its_channels_first_is_an_error():
    class Mixing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x.flip(1) + x).mean((1, 2, 3))

    with pytest.raises(InputTransformError, match=r"not a per-channel affine map .*channel 0"):
        analyze(Mixing(), images(), first_layer="conv", progress=False)


# ------------------------------------------------------------------------ 7: weights of another first layer


class Net(nn.Module):
    def __init__(self, k: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, k, padding=k // 2)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.stem(x).mean((2, 3)))


def test_weights_of_another_kernel_size_are_refused_naming_both_shapes(tmp_path):
    path = tmp_path / "k3.pt"
    torch.save(Net(3).state_dict(), path)
    loaded = LoadedModel("net", Net(5), read_checkpoint(path), f"from checkpoint {path}")
    with pytest.raises(ProfileError, match=r"\(16, 3, 3, 3\).*stem: 16 filters 5x5.*\(16, 3, 5, 5\)"):
        analyze(loaded, images(), progress=False)


def test_the_cli_refuses_weights_of_another_kernel_size(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n\ndef build(num_classes=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),"
        " nn.Linear(16, num_classes))\n"
    )
    torch.save(nn.Sequential(nn.Conv2d(3, 16, 3)).state_dict(), tmp_path / "k3.pt")
    data = tmp_path / "imgs"
    for label in "ab":
        (data / label).mkdir(parents=True)
        for i, image in enumerate(images(12, 3)):
            Image.fromarray(image.transpose(1, 2, 0)).save(data / label / f"{i}.png")
    argv = ["profile", f"{tmp_path / 'net.py'}:build", "--weights", str(tmp_path / "k3.pt"), "--data", str(data),
            "--image-size", "12", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "has shape (16, 3, 3, 3)" in err and "(16, 3, 5, 5)" in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "summary.txt").exists()


# ------------------------------------------------------------------------ 8: tracebacks and misleading messages


def test_a_kernel_larger_than_the_images_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ProfileError, match=r"9x9 filters, larger than the 8x8 images.*at least 9x9 pixels"):
        analyze(Net(9), images(8), progress=False)
    data = tmp_path / "imgs"
    for label in "ab":
        (data / label).mkdir(parents=True)
        for i, image in enumerate(images(12, 2)):
            Image.fromarray(image.transpose(1, 2, 0)).save(data / label / f"{i}.png")
    argv = ["profile", "torchvision:vit_b_16", "--data", str(data), "--image-size", "8", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "torchvision:vit_b_16 cannot be built for 8x8 images" in err and "Traceback" not in err, err


def test_safetensors_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # not installed
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(CheckpointError, match=r"model\.safetensors .*needs the safetensors package: pip install"):
        read_checkpoint(path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_checkpoint_with_pickled_extras_keeps_torchs_reason_and_says_how_to_load_it(tmp_path, legacy):
    """A Lightning checkpoint whose hyper-parameters hold a pathlib.Path, in torch's zip and legacy formats."""
    path = tmp_path / "lightning.ckpt"
    lightning = {"state_dict": {"model.stem.weight": torch.zeros(4, 3, 3, 3)}, "hparams": {"root": pathlib.Path("/")}}
    torch.save(lightning, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert "Unsupported global" in message and "PosixPath" in message and "weights_only=False" in message, message
    assert "not a torch checkpoint" not in message and "(a whole pickled model?)" not in message, message
    assert ("legacy (non-zip) format" in message) == legacy, message


def test_a_legacy_checkpoint_is_read(tmp_path):
    path = tmp_path / "legacy.pt"
    state = {"stem.weight": torch.randn(4, 3, 3, 3)}
    torch.save({"state_dict": state, "epoch": 3, "hparams": {"lr": 0.1, "name": "x"}}, path,
               _use_new_zipfile_serialization=False)  # fmt: skip
    assert torch.equal(read_checkpoint(path)["stem.weight"], state["stem.weight"])
    path.write_bytes(b"\x80\x02not really a pickle")
    with pytest.raises(CheckpointError, match="is not a torch checkpoint"):
        read_checkpoint(path)


def test_a_named_first_layer_reads_well_in_the_summary():
    summary = analyze(Net(3), images(), first_layer="stem", progress=False).summary()
    assert (
        "found by named" not in summary and "stem: 16 filters 3x3, stride 1, padding 1 (named by the caller)" in summary
    )
