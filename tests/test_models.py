"""Unit tests for firstlayer.models: the networks, their output shapes and the first layer each one names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from firstlayer.models import ARCHITECTURES, FIRST_LAYER, build_model, first_layer

CASES = [(a, k) for a in ARCHITECTURES for k in (3, 5)] + [("resnet18", 7)]
DEFAULT_WIDTH = {"linear": 64, "small_cnn": 32, "resnet18": 64}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_architectures_and_first_layer_table_agree():
    assert set(ARCHITECTURES) == set(FIRST_LAYER) == {"linear", "small_cnn", "resnet18"}


@pytest.mark.parametrize(("arch", "k"), CASES)
def test_output_shape_and_first_layer(arch, k, x):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, kernel_size=k, image_size=32)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()
    conv = first_layer(model, arch)
    assert conv is model.get_submodule(FIRST_LAYER[arch])
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.shape == (DEFAULT_WIDTH[arch], 3, k, k)


@pytest.mark.parametrize(("arch", "k"), [("linear", 3), ("small_cnn", 5), ("resnet18", 3)])
def test_first_layer_is_the_conv_that_sees_the_image(arch, k):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    model = build_model(arch, num_classes=4, kernel_size=k, image_size=16).eval()
    calls: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, inp, out: calls.append((m, inp[0])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    first, inp = calls[0]
    assert first is first_layer(model, arch)
    assert torch.equal(inp, x)


@pytest.mark.parametrize("arch", ["linear", "small_cnn"])
def test_width_sets_the_number_of_filters(arch, x):
    model = build_model(arch, num_classes=3, kernel_size=5, width=8)
    assert first_layer(model, arch).weight.shape == (8, 3, 5, 5)
    with torch.no_grad():
        assert model(x).shape == (2, 3)


def test_linear_model_image_size_and_stride():
    model = build_model("linear", num_classes=2, kernel_size=5, width=4, image_size=16)
    conv = first_layer(model, "linear")
    assert conv.stride == (1, 1) and conv.padding == (0, 0) and conv.bias is None
    with torch.no_grad():
        assert model(torch.randn(3, 3, 16, 16)).shape == (3, 2)


def test_linear_model_is_affine():
    torch.manual_seed(1)
    model = build_model("linear", num_classes=5, kernel_size=3, width=4, image_size=8).double()
    g = torch.Generator().manual_seed(1)
    a, b = (
        torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64),
        torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64),
    )
    with torch.no_grad():
        f0 = model(torch.zeros_like(a))
        lhs = model(2.0 * a - 3.0 * b) - f0
        rhs = 2.0 * (model(a) - f0) - 3.0 * (model(b) - f0)
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_small_cnn_is_not_linear():
    torch.manual_seed(2)
    model = build_model("small_cnn", num_classes=5, kernel_size=3, width=4).double().eval()
    a = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(model(-a) - model(0 * a), -(model(a) - model(0 * a)))


@pytest.mark.parametrize("k", [3, 7])
def test_resnet18_stem_is_cifar_style(k, x):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, kernel_size=k)
    conv = first_layer(model, "resnet18")
    assert conv.stride == (1, 1) and conv.padding == (k // 2, k // 2) and conv.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        stem = model.relu(model.bn1(conv(x)))
        assert model.maxpool(stem).shape == (2, 64, 32, 32)
    # the stem is initialised, not left at nn.Conv2d's default (kaiming fan_out, like torchvision's convs)
    std = conv.weight.std().item()
    expected = (2.0 / (64 * k * k)) ** 0.5
    assert 0.8 * expected < std < 1.2 * expected


def test_init_follows_global_seed():
    torch.manual_seed(5)
    a = build_model("small_cnn", num_classes=3, kernel_size=3, width=4)
    torch.manual_seed(5)
    b = build_model("small_cnn", num_classes=3, kernel_size=3, width=4)
    torch.manual_seed(6)
    c = build_model("small_cnn", num_classes=3, kernel_size=3, width=4)
    wa, wb, wc = (first_layer(m, "small_cnn").weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_unknown_architecture_raises_and_lists_allowed():
    with pytest.raises(ValueError, match="vgg11") as err:
        build_model("vgg11", num_classes=10)
    for name in ARCHITECTURES:
        assert name in str(err.value)
