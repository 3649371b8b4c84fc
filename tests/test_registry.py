"""The model registry (firstlayer.models.MODELS) drives the config checks made before any job, the schema's list of
models, stacking and the resource estimates: adding a network is one registered builder (``register_model``)."""

from __future__ import annotations

import re

import pytest

from firstlayer import models
from firstlayer.config import ConfigError, load_schema, validate_config
from firstlayer.modelspec import build_model


def config(*, image_size: int = 32, **arch) -> dict:
    """One embedded dataset of `image_size` images and one architecture 'net' trained on it."""
    return {
        "datasets": {"crops": {"source": "embedded", "image_size": image_size}},
        "architectures": {"net": {"lr": 0.1, "steps": 10, **arch}},
        "grid": [{"datasets": ["crops"], "architectures": ["net"]}],
    }


def problems(cfg: dict) -> list[str]:
    """The lines of the ConfigError that validating `cfg` raises."""
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    return [line.strip() for line in str(err.value).splitlines()[1:]]


def test_several_seeds_per_job_only_for_stackable_models():
    [line] = problems(config(model="resnet20", seeds_per_job=2))
    assert line == (
        "config key 'architectures.net.seeds_per_job': resnet20 trains one seed per job; several seeds per job "
        "need a model without batch statistics: linear, small_cnn"
    )
    validate_config(config(model="small_cnn", seeds_per_job=2))


def test_vit_patch_size_must_divide_the_image_side():
    [line] = problems(config(model="vit_tiny", kernel_size=8, image_size=20))
    assert line == (
        "config key 'architectures.net.kernel_size': the patch size 8 does not divide the image side 20 of dataset "
        "'crops' (grid block 0); pick a kernel size that fits its images"
    )
    validate_config(config(model="vit_tiny", kernel_size=4, image_size=20))


def test_kernel_larger_than_the_images_it_is_trained_on():
    cfg = config(model="small_cnn", kernel_size=11, image_size=8)
    cfg["datasets"]["large"] = {"source": "embedded"}
    cfg["grid"].append({"datasets": ["large"], "architectures": ["net"]})
    [line] = problems(cfg)  # only the dataset with small images
    assert line.startswith("config key 'architectures.net.kernel_size': the kernel size 11 is larger than the image")
    assert "side 8 of dataset 'crops' (grid block 0)" in line


def test_a_dataset_no_architecture_trains_on_is_not_checked():
    cfg = config(model="small_cnn", kernel_size=11)
    cfg["datasets"]["tiny"] = {"source": "embedded", "image_size": 8}
    validate_config(cfg)


def test_images_smaller_than_the_models_minimum():
    [line] = problems(config(model="vgg11_bn", image_size=16))
    assert line == (
        "config key 'datasets.crops.image_size': architecture 'net' (vgg11_bn, grid block 0) needs images of at "
        "least 32x32, got 16x16; raise 'image_size' or train another model on it"
    )
    validate_config(config(model="vgg11_bn", image_size=32))


def test_fixed_width():
    [line] = problems(config(model="resnet18", width=32))
    assert line == (
        "config key 'architectures.net.width': resnet18 has exactly 64 first-layer filters (its width is fixed); "
        "remove 'width' or use a model whose width can change"
    )
    validate_config(config(model="resnet18", width=64))
    with pytest.raises(ValueError, match="width is fixed at 64"):
        build_model("resnet18", num_classes=3, width=32)


def test_build_model_checks_the_images_like_the_config():
    with pytest.raises(ValueError, match="vgg11_bn: needs images of at least 32x32, got 16x16"):
        build_model("vgg11_bn", num_classes=10, image_size=16)
    with pytest.raises(ValueError, match="vit_tiny: the patch size 5 does not divide the image side 32"):
        build_model("vit_tiny", num_classes=10, kernel_size=5)
    with pytest.raises(ValueError, match="linear: the kernel size 9 is larger than the image side 8"):
        build_model("linear", num_classes=10, kernel_size=9, image_size=8)


@pytest.fixture
def registry():
    """The registry, restored after the test (a test may register a throwaway model)."""
    saved = dict(models.MODELS)
    yield models.MODELS
    models.MODELS.clear()
    models.MODELS.update(saved)


def test_adding_a_network_is_one_registered_builder(registry, tmp_path):
    """A throwaway network registered with the decorator alone: the schema accepts it, the stacking check and the
    resource estimates read its entry, and build_model and first_layer work on it."""
    from torch import nn

    from firstlayer import resources

    cfg = config(model="toy", seeds_per_job=2)
    assert "toy" not in load_schema()["$defs"]["architecture"]["properties"]["model"]["anyOf"][0]["enum"]
    assert re.search(
        r"'architectures\.net\.model': 'toy' is not a model; a model is a built-in name \(linear,", problems(cfg)[0]
    )

    @models.register_model(
        "toy",
        first_layer="0",
        default_width=5,
        stackable=False,
        batch_norm=False,
        cpu_images_per_second=1,
        activation_mb=100.0,
        min_image_size=16,
    )
    def toy(classes: int, k: int, width: int, side: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, width, k), nn.Flatten(), nn.LazyLinear(classes))

    assert registry["toy"].builder is toy
    assert load_schema()["$defs"]["architecture"]["properties"]["model"]["anyOf"][0]["enum"][-1] == "toy"
    assert problems(cfg) == [
        "config key 'architectures.net.seeds_per_job': toy trains one seed per job; several seeds per job need a "
        "model without batch statistics: linear, small_cnn"
    ]
    assert "toy" in problems(config(model="toy", image_size=8))[0]  # its minimum image size
    registry["toy"] = models.ModelSpec(**{**registry["toy"].__dict__, "stackable": True})
    cfg = validate_config(cfg)
    assert "toy" in models.stackable_models()
    # 10 steps x 64 images x 2 seeds at 1 image/s on the CPU: 1280 s x 3 = 64 min, + 10
    cfg["training"]["device"] = "cpu"
    assert resources.train_runtime(cfg, "crops", "net", "0+1", tmp_path / "none") == 74
    mem = resources.train_mem_mb(cfg, "crops", "net", "0+1", tmp_path / "none")
    assert mem == pytest.approx(1500 + 2 * resources.dataset_mb(cfg["datasets"]["crops"], "") + 100 * 256, abs=1)
    net = build_model("toy", num_classes=3, image_size=16)
    assert models.first_layer(net, "toy").weight.shape == (5, 3, 3, 3)


def test_a_name_is_registered_once_and_has_no_colon(registry):
    with pytest.raises(ValueError, match="model 'linear' is registered twice; pick another name"):
        models.register_model("linear", default_width=1, stackable=True, batch_norm=False,
                              cpu_images_per_second=1, activation_mb=1)(lambda c, k, w, s: None)  # fmt: skip
    with pytest.raises(ValueError, match="has a colon"):
        models.register_model("my:net", default_width=1, stackable=True, batch_norm=False,
                              cpu_images_per_second=1, activation_mb=1)(lambda c, k, w, s: None)  # fmt: skip
