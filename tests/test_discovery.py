"""Unit tests for firstlayer.discovery: the first layer is the Conv2d the input tensor itself enters, on the
built-ins, torchvision's families, timm models and hand-made networks; none or several is an error that lists
the candidates."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from firstlayer.discovery import FirstLayerError, find_first_layer
from firstlayer.models import MODELS
from firstlayer.modelspec import build_model

#: A kernel size each built-in takes at 32x32 (a ViT's patch size must divide the image).
KERNEL = {"vit_tiny": 8}


@pytest.mark.parametrize("name", list(MODELS))
def test_each_builtins_pinned_first_layer_is_the_one_discovery_finds(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(name, num_classes=4, kernel_size=KERNEL.get(name, 3), image_size=32)
    found = find_first_layer(net, image_size=32)
    assert found.name == MODELS[name].first_layer  # the registry's pin
    assert found.module is net.get_submodule(found.name)
    assert found.found_by.startswith("forward hooks")


#: One model per torchvision family, its first layer, and whether to build it on the meta device (no memory, no
#: init: VGG's 4096-wide classifier, ViT-B's 86 M parameters).
TORCHVISION = [
    ("resnet18", "conv1", False),
    ("vgg11", "features.0", True),
    ("densenet121", "features.conv0", False),
    ("efficientnet_b0", "features.0.0", False),
    ("vit_b_16", "conv_proj", True),
]


@pytest.mark.parametrize(("name", "expected", "meta"), TORCHVISION)
def test_torchvision_families(name: str, expected: str, meta: bool) -> None:
    """At weights=None and the data's 32x32 images; ViT-B/16 refuses 32x32 and is probed at its own 224x224."""
    with torch.device("meta" if meta else "cpu"):
        net = torchvision.models.get_model(name, weights=None)
    found = find_first_layer(net, image_size=32)
    assert found.name == expected
    assert isinstance(found.module, nn.Conv2d) and found.module.in_channels == 3


class LateStem(nn.Module):
    """The first Conv2d in named_modules() order is applied to an intermediate 3-channel map, not to the input."""

    def __init__(self) -> None:
        super().__init__()
        self.refine = nn.Conv2d(3, 3, 3, padding=1)
        self.stem = nn.Sequential(nn.Identity(), nn.Conv2d(3, 3, 5, padding=2))
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(torch.relu(self.norm(self.stem(x)))).mean((1, 2, 3))


def test_the_first_conv_in_module_order_is_not_taken_for_the_first_layer() -> None:
    net = LateStem()
    assert next(n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)) == "refine"
    found = find_first_layer(net, image_size=16)
    assert found.name == "stem.1"
    assert net.training, "the probe runs in eval mode and restores the training flag"
    assert found.describe() == "stem.1: 3 filters 5x5, stride 1, padding 2"


class TwoStems(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


class NormalisesInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.deeper = nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deeper(self.conv(x * 2 - 1))


def test_a_view_of_the_input_is_the_input() -> None:
    """x.view(...) and x.float() keep the input's values and layout: the conv that takes them is the first layer."""

    class Viewed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.deeper = nn.Conv2d(4, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.deeper(self.conv(x.float().view(-1, 3, *x.shape[-2:])))

    assert find_first_layer(Viewed(), image_size=8).name == "conv"


def test_several_candidates_are_listed_with_how_to_choose() -> None:
    with pytest.raises(FirstLayerError, match=r"enters several Conv2d layers; candidates: a, b; choose one with "
                       r"first_layer='NAME' \(--first-layer NAME\)"):  # fmt: skip
        find_first_layer(TwoStems(), image_size=8)
    assert find_first_layer(TwoStems(), image_size=8, name="b").name == "b"


def test_a_declared_first_conv_settles_several_candidates() -> None:
    """timm models declare ``pretrained_cfg['first_conv']``; it decides when the hooks cannot."""
    net = TwoStems()
    net.pretrained_cfg = {"first_conv": "b"}
    found = find_first_layer(net, image_size=8)
    assert (found.name, found.found_by) == ("b", "timm pretrained_cfg['first_conv']")


def test_an_input_transformed_before_any_conv_is_an_error() -> None:
    with pytest.raises(FirstLayerError, match=r"enters no Conv2d of NormalisesInside .*candidates: conv;"):
        find_first_layer(NormalisesInside(), image_size=8)
    assert find_first_layer(NormalisesInside(), name="conv.weight").name == "conv"


def test_a_network_without_convolutions() -> None:
    with pytest.raises(FirstLayerError, match=r"candidates: none \(no 3-channel Conv2d\)"):
        find_first_layer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), image_size=8)


def test_a_network_that_runs_on_no_dummy_batch() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("expects a dict of tensors")

    with pytest.raises(FirstLayerError, match=r"did not run on a dummy batch .*8x8: RuntimeError: expects a dict"):
        find_first_layer(Broken(), image_size=8)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (nn.Conv2d(3, 4, 3, dilation=2), "is dilated"),
        (nn.Conv2d(3, 3, 3, groups=3), "is grouped"),
        (nn.Conv2d(3, 4, (3, 5)), "has a non-square kernel"),
        (nn.Conv2d(1, 4, 3), "does not take 3 input channels"),
    ],
)
def test_named_layers_must_be_k_by_k_by_3_patch_filters(layer: nn.Module, message: str) -> None:
    with pytest.raises(FirstLayerError, match=message):
        find_first_layer(nn.Sequential(layer), name="0")


def test_a_named_layer_that_does_not_exist_or_is_no_conv() -> None:
    net = LateStem()
    with pytest.raises(FirstLayerError, match=r"LateStem has no module 'stem\.9'; candidates: refine, stem\.1"):
        find_first_layer(net, name="stem.9")
    with pytest.raises(FirstLayerError, match="norm is a BatchNorm2d, not a Conv2d"):
        find_first_layer(net, name="norm")


@pytest.mark.parametrize(("name", "expected"), [("resnet18", "conv1"), ("vit_tiny_patch16_224", "patch_embed.proj")])
def test_timm_models(name: str, expected: str) -> None:
    """timm's ViT takes only its 224x224 (its pretrained_cfg input size); the hooks agree with its first_conv."""
    timm = pytest.importorskip("timm")
    net = timm.create_model(name, pretrained=False)
    found = find_first_layer(net, image_size=32)
    assert found.name == expected == net.pretrained_cfg["first_conv"]
