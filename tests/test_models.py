"""Unit tests for firstlayer.models and firstlayer.networks: the registry, the networks, their output shapes and the
first layer each one names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from firstlayer.config import ConfigError, load_schema, validate_config
from firstlayer.energy import energy_profile
from firstlayer.models import MODELS, first_layer, stackable_models
from firstlayer.modelspec import build_model
from firstlayer.networks import ShortcutA
from firstlayer.patches import normalise, patch_pca, raw_moments, unfold_patches
from firstlayer.train import init_model

#: Kernel sizes each architecture is tested with: odd kernels for the CNNs, patch sizes for the ViT.
KERNELS = {"linear": (3, 5), "small_cnn": (3, 5), "resnet18": (3, 5, 7), "resnet20": (3, 5), "vgg11_bn": (3, 5)}
KERNELS["vit_tiny"] = (2, 4, 8)
CASES = [(a, k) for a in MODELS for k in KERNELS[a]]
#: The default kernel size of each architecture (the schema's default).
DEFAULT_K = {a: 4 if a == "vit_tiny" else 3 for a in MODELS}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_the_tables_derived_from_the_registry_agree():
    assert {"linear", "small_cnn", "resnet18", "resnet20", "vgg11_bn", "vit_tiny"} <= set(MODELS)
    assert stackable_models() == ["linear", "small_cnn"]
    assert [m for m, spec in MODELS.items() if spec.linear] == ["linear"]
    schema = load_schema()["$defs"]["architecture"]["properties"]["model"]
    assert schema["anyOf"][0]["enum"] == list(MODELS)  # or a user model's spec: schema["anyOf"][1]


def test_parsing_the_registry_imports_no_torch():
    """The workflow reads the registry while it is parsed: a dry run must not pay for importing torch."""
    import subprocess
    import sys

    code = "import sys, firstlayer.models, firstlayer.config, firstlayer.resources; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("model", "k"), CASES)
def test_output_shape_and_first_layer(model, k, x):
    torch.manual_seed(0)
    net = build_model(model, num_classes=7, kernel_size=k, image_size=32).eval()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()
    conv = first_layer(net, model)
    assert conv is net.get_submodule(MODELS[model].first_layer)
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.shape == (MODELS[model].default_width, 3, k, k)


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("classes", [10, 100])
def test_output_shape_for_cifar_class_counts(model, classes, x):
    torch.manual_seed(0)
    net = build_model(model, num_classes=classes, kernel_size=DEFAULT_K[model]).eval()
    with torch.no_grad():
        assert net(x).shape == (2, classes)


@pytest.mark.parametrize(("model", "k"), [(a, DEFAULT_K[a]) for a in MODELS] + [("small_cnn", 5), ("vit_tiny", 8)])
def test_first_layer_is_the_module_that_sees_the_image(model, k):
    """The first module called in a forward pass is the named first layer, it is a Conv2d, and its input is the
    image tensor itself (no module transforms the image before it)."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    net = build_model(model, num_classes=4, kernel_size=k, image_size=32).eval()
    calls: list[tuple[nn.Module, torch.Tensor]] = []
    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_pre_hook(lambda m, inp: calls.append((m, inp[0]))) for m in leaves]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    first, inp = calls[0]
    assert first is first_layer(net, model)
    assert inp is x
    convs = [m for m, _ in calls if isinstance(m, nn.Conv2d)]
    assert convs[0] is first and sum(m is first for m, _ in calls) == 1


def test_first_layer_rejects_a_module_that_is_not_a_3_channel_conv():
    net = build_model("resnet20", num_classes=3)
    net.conv1 = nn.Conv2d(1, 16, 3)
    with pytest.raises(ValueError, match=r"resnet20: conv1 \(Conv2d\(1, 16.*\) does not take 3 input channels"):
        first_layer(net, "resnet20")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("resnet20", 269_722),  # He et al. 2016, Table 6: 0.27 M
        ("vgg11_bn", 9_225_984 + 512 * 10 + 10),  # torchvision's vgg11_bn features (132,868,840 - classifier) + head
        # patch embedding, class token, positions (64 patches + class), 4 blocks of 12 w^2 + 13 w, final norm, head
        ("vit_tiny", (48 * 192 + 192) + 192 + 65 * 192 + 4 * (12 * 192**2 + 13 * 192) + 2 * 192 + 192 * 10 + 10),
    ],
)
def test_parameter_counts(model, expected):
    net = build_model(model, num_classes=10, kernel_size=DEFAULT_K[model])
    assert sum(p.numel() for p in net.parameters()) == expected


def test_resnet20_layout_and_option_a_shortcuts(x):
    net = build_model("resnet20", num_classes=10)
    stages = [net.layer1, net.layer2, net.layer3]
    assert [len(s) for s in stages] == [3, 3, 3]
    assert [s[0].conv2.out_channels for s in stages] == [16, 32, 64]
    shortcuts = [b.downsample for s in stages for b in s if b.downsample is not None]
    assert len(shortcuts) == 2 and all(isinstance(s, ShortcutA) for s in shortcuts)
    # option A: subsample and zero-pad the new channels; no parameters
    y = ShortcutA(16, 32, 2)(x.repeat(1, 6, 1, 1)[:, :16])
    assert y.shape == (2, 32, 16, 16) and not list(ShortcutA(16, 32, 2).parameters())
    assert (
        torch.equal(y[:, 8:24], x.repeat(1, 6, 1, 1)[:, :16, ::2, ::2]) and not y[:, :8].any() and not y[:, 24:].any()
    )
    wide = build_model("resnet20", num_classes=10, kernel_size=5, width=8)
    assert first_layer(wide, "resnet20").weight.shape == (8, 3, 5, 5) and wide.fc.in_features == 32
    with torch.no_grad():
        assert wide.eval()(x).shape == (2, 10)


def test_vgg11_bn_width_scales_every_channel_count(x):
    convs = [m for m in build_model("vgg11_bn", num_classes=10, width=16).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    default = build_model("vgg11_bn", num_classes=10, kernel_size=5)
    convs = [m for m in default.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in default.modules()) == 8
    assert convs[0].kernel_size == (5, 5) and convs[0].padding == (2, 2)
    assert isinstance(default.classifier, nn.Linear) and default.classifier.in_features == 512
    with pytest.raises(ValueError, match="at least 32x32"):
        build_model("vgg11_bn", num_classes=10, image_size=16)
    with torch.no_grad():  # larger images: global pooling of the 2x2 map
        assert default.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_vit_tiny_patch_embedding_is_a_strided_conv_on_patches():
    net = build_model("vit_tiny", num_classes=10, kernel_size=4, width=48)
    conv = first_layer(net, "vit_tiny")
    assert conv.kernel_size == conv.stride == (4, 4) and conv.out_channels == 48
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    w = conv.weight.double()
    out = torch.nn.functional.conv2d(x, w, stride=4)  # (1, 48, 8, 8)
    patches = unfold_patches(x, 4).view(29, 29, 48)[::4, ::4]  # stride-1 patches at the stride-4 grid
    torch.testing.assert_close(out[0].permute(1, 2, 0), patches @ w.flatten(1).T)
    with pytest.raises(ValueError, match="does not divide"):
        build_model("vit_tiny", num_classes=10, kernel_size=5)
    with pytest.raises(ValueError, match="multiple of its 3"):
        build_model("vit_tiny", num_classes=10, kernel_size=4, width=64)


def test_linear_model_image_size_and_stride():
    net = build_model("linear", num_classes=2, kernel_size=5, width=4, image_size=16)
    conv = first_layer(net, "linear")
    assert conv.stride == (1, 1) and conv.padding == (0, 0) and conv.bias is None
    with torch.no_grad():
        assert net(torch.randn(3, 3, 16, 16)).shape == (3, 2)


@pytest.mark.parametrize("model", ["linear", "small_cnn"])
def test_width_sets_the_number_of_filters(model, x):
    net = build_model(model, num_classes=3, kernel_size=5, width=8)
    assert first_layer(net, model).weight.shape == (8, 3, 5, 5)
    with torch.no_grad():
        assert net(x).shape == (2, 3)


def test_linear_model_is_affine():
    torch.manual_seed(1)
    net = build_model("linear", num_classes=5, kernel_size=3, width=4, image_size=8).double()
    g = torch.Generator().manual_seed(1)
    a, b = (
        torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64),
        torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64),
    )
    with torch.no_grad():
        f0 = net(torch.zeros_like(a))
        lhs = net(2.0 * a - 3.0 * b) - f0
        rhs = 2.0 * (net(a) - f0) - 3.0 * (net(b) - f0)
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_small_cnn_is_not_linear():
    torch.manual_seed(2)
    net = build_model("small_cnn", num_classes=5, kernel_size=3, width=4).double().eval()
    a = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(net(-a) - net(0 * a), -(net(a) - net(0 * a)))


@pytest.mark.parametrize("k", [3, 5, 7])
def test_resnet18_stem_is_cifar_style(k, x):
    torch.manual_seed(0)
    net = build_model("resnet18", num_classes=10, kernel_size=k)
    conv = first_layer(net, "resnet18")
    assert conv.stride == (1, 1) and conv.padding == (k // 2, k // 2) and conv.bias is None
    assert isinstance(net.maxpool, nn.Identity)
    with torch.no_grad():
        stem = net.relu(net.bn1(conv(x)))
        assert net.maxpool(stem).shape == (2, 64, 32, 32)
    # the stem is initialised, not left at nn.Conv2d's default (kaiming fan_out, like torchvision's convs)
    std = conv.weight.std().item()
    expected = (2.0 / (64 * k * k)) ** 0.5
    assert 0.8 * expected < std < 1.2 * expected


@pytest.mark.parametrize(("model", "k", "components"), [("resnet18", 5, 75), ("resnet18", 7, 147), ("vit_tiny", 4, 48)])
def test_energy_profile_of_a_large_or_even_first_kernel(model, k, components):
    """The patch statistics and the profile work at the first layer's kernel size: 5x5x3 = 75, 7x7x3 = 147
    components, and the ViT's even 4x4 patches (exact moments checked against float64 unfolded patches)."""
    images = np.random.default_rng(k).integers(0, 256, size=(6, 3, 12, 12), dtype=np.uint8)
    raw, _ = raw_moments(images, k, images_per_chunk=4)
    patches = unfold_patches(torch.from_numpy(images).double() - 128, k).numpy()
    assert raw.count == patches.shape[0]
    np.testing.assert_allclose(raw.covariance(), np.cov(patches.T, bias=True), rtol=1e-10, atol=1e-8)
    x = normalise(torch.from_numpy(images), torch.full((3,), 0.5), torch.full((3,), 0.25), torch.float64)
    _, basis = patch_pca(np.cov(unfold_patches(x, k).numpy().T, bias=True))
    weight = first_layer(build_model(model, num_classes=10, kernel_size=k), model).weight.detach()
    energy = energy_profile(weight.flatten(1).numpy(), basis)
    assert energy.shape == (components,) and np.all(energy > 0)
    # an orthonormal basis keeps the filters' total energy
    np.testing.assert_allclose((energy**2).sum(), (weight.double().flatten(1) ** 2).sum(1).mean().item(), rtol=1e-10)


@pytest.mark.parametrize("model", list(MODELS))
def test_init_is_seed_deterministic(model):
    kw = {"num_classes": 10, "kernel_size": DEFAULT_K[model], "width": None, "image_size": 32}
    a, b, c = (init_model(model, seed=s, **kw) for s in (5, 5, 6))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[key], sb[key]) for key in sa)
    wa, wc = first_layer(a, model).weight, first_layer(c, model).weight
    assert not torch.equal(wa, wc)


def test_init_follows_global_seed():
    torch.manual_seed(5)
    a = build_model("small_cnn", num_classes=3, kernel_size=3, width=4)
    torch.manual_seed(5)
    b = build_model("small_cnn", num_classes=3, kernel_size=3, width=4)
    torch.manual_seed(6)
    c = build_model("small_cnn", num_classes=3, kernel_size=3, width=4)
    wa, wb, wc = (first_layer(m, "small_cnn").weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.parametrize("model", list(MODELS))
def test_registry_batch_norm_matches_the_network_and_forbids_stacking(model):
    net = build_model(model, num_classes=3, kernel_size=DEFAULT_K[model])
    has_buffers = next(net.buffers(), None) is not None  # BatchNorm's running statistics
    assert MODELS[model].batch_norm == any(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == has_buffers
    if MODELS[model].stackable:
        assert not has_buffers


def test_unknown_architecture_raises_and_lists_allowed():
    with pytest.raises(ValueError, match="vgg11") as err:
        build_model("vgg11", num_classes=10)
    for name in MODELS:
        assert name in str(err.value)


# ------------------------------------------------------------------------ the architectures in the config


def config_with(**arch) -> dict:
    return {
        "datasets": {"a": {"source": "embedded"}},
        "architectures": {"net": {"lr": 0.1, "steps": 10, **arch}},
        "grid": [{"datasets": ["a"], "architectures": ["net"]}],
    }


@pytest.mark.parametrize("model", list(MODELS))
def test_config_default_kernel_size(model):
    config = validate_config(config_with(model=model))
    assert config["architectures"]["net"]["kernel_size"] == DEFAULT_K[model]


def test_config_even_kernel_sizes_only_for_the_vit():
    assert validate_config(config_with(model="vit_tiny", kernel_size=8))["architectures"]["net"]["kernel_size"] == 8
    for model, k in (("vit_tiny", 3), ("resnet20", 4), ("vgg11_bn", 2)):
        with pytest.raises(ConfigError, match=r"architectures\.net\.kernel_size"):
            validate_config(config_with(model=model, kernel_size=k))
    with pytest.raises(ConfigError, match=r"architectures\.net\.width"):
        validate_config(config_with(model="vit_tiny", width=64))
    assert (
        validate_config(config_with(model="vgg11_bn", kernel_size=7, width=32))["architectures"]["net"]["width"] == 32
    )
