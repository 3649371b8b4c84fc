"""The model registry: one ``ModelSpec`` per network in ``MODELS``, read by the config schema and checks, the
trainer and the resource estimates. Adding a model is one entry here plus its network in ``firstlayer.networks``.

Importing this module imports no torch (parsing the workflow must stay fast): the builders import
``firstlayer.networks`` when they are called.

Each spec names its first layer (a module path for ``get_submodule``): the Conv2d that the normalised image itself
goes into, before any other layer touches it (a test holds this with forward hooks for every model).

- ``linear``: ``conv``, the only convolution.
- ``small_cnn``: ``features.0``, the head of the ``features`` stack.
- ``resnet18``, ``resnet20``: ``conv1``, the stem; the residual stages start after it (and after its BatchNorm).
- ``vgg11_bn``: ``features.0``, the first conv of torchvision's VGG ``features`` stack.
- ``vit_tiny``: ``conv_proj``, the patch embedding: a k x k, stride-k convolution whose k*k*3 filters act on
  non-overlapping patches, the same patch vectors (channel, row, column) as a conv layer's.

A user model (``torchvision:NAME``, ``timm:NAME``, ``path/file.py:builder``, ``package.module:builder``; parsed by
``firstlayer.modelspec``) gets a spec of the same shape from ``user_model_spec``: built by ``firstlayer.modelspec``,
never stacked, conservative resource figures, and its first layer named by the validated config (found there by
forward hooks, or given as the architecture's ``first_layer``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

#: (num_classes, kernel_size, width, image_size) -> a freshly initialised network (a user model's builder takes
#: None for a kernel size or width the config leaves to the network).
Builder = Callable[[int, int | None, int | None, int], "nn.Module"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the workflow knows about one model (a builder name of the config's `model` key)."""

    builder: Builder
    #: module path of the first-layer Conv2d (see the module docstring)
    first_layer: str
    #: first-layer filters when the config gives no `width`
    default_width: int
    #: seeds can be trained together in one process (``train_seeds``): no per-seed BatchNorm buffers
    stackable: bool
    batch_norm: bool
    #: CPU training throughput at 32x32, images/s on 2 cores (conservative: the runtime request)
    cpu_images_per_second: float
    #: MiB of float32 activations per 32x32 training image, forward and backward (the CPU memory request)
    activation_mb: float
    #: the width cannot change (`width` must be absent or equal `default_width`)
    fixed_width: bool = False
    min_image_size: int = 1
    #: the network is linear in its input: it trains in float32 and steps in input space, as x . G + b
    linear: bool = False
    #: (kernel_size, image side) -> why the model cannot take them, or None
    kernel_check: Callable[[int, int], str | None] | None = None


def _modelspec() -> ModuleType:
    """firstlayer.modelspec, imported when a user model is built (it imports the user's code, and torch)."""
    return importlib.import_module("firstlayer.modelspec")


def _networks() -> ModuleType:
    """firstlayer.networks, imported at the first build (it imports torch and torchvision)."""
    return importlib.import_module("firstlayer.networks")


def _patch_divides(kernel_size: int, side: int) -> str | None:
    """A ViT's patches tile the image: the patch size must divide the image side."""
    return f"the patch size {kernel_size} does not divide the image side {side}" if side % kernel_size else None


MODELS: dict[str, ModelSpec] = {
    "linear": ModelSpec(
        builder=lambda c, k, w, s: _networks().LinearCNN(c, k, w, s),
        first_layer="conv",
        default_width=64,
        stackable=True,
        batch_norm=False,
        cpu_images_per_second=2000,
        activation_mb=0.05,
        linear=True,
    ),
    "small_cnn": ModelSpec(
        builder=lambda c, k, w, s: _networks().SmallCNN(c, k, w),
        first_layer="features.0",
        default_width=32,
        stackable=True,
        batch_norm=False,
        cpu_images_per_second=500,
        activation_mb=0.5,
    ),
    "resnet18": ModelSpec(
        builder=lambda c, k, w, s: _networks().resnet18(c, k),
        first_layer="conv1",
        default_width=64,
        fixed_width=True,  # torchvision's stem
        stackable=False,
        batch_norm=True,
        cpu_images_per_second=20,
        activation_mb=8.0,
    ),
    "resnet20": ModelSpec(
        builder=lambda c, k, w, s: _networks().ResNet20(c, k, w),
        first_layer="conv1",
        default_width=16,
        stackable=False,
        batch_norm=True,
        cpu_images_per_second=150,
        activation_mb=1.5,
    ),
    "vgg11_bn": ModelSpec(
        builder=lambda c, k, w, s: _networks().VGG11BN(c, k, w),
        first_layer="features.0",
        default_width=64,
        stackable=False,
        batch_norm=True,
        min_image_size=32,  # five 2x2 max-pools
        cpu_images_per_second=60,
        activation_mb=4.0,
    ),
    "vit_tiny": ModelSpec(
        builder=lambda c, k, w, s: _networks().vit_tiny(c, k, w, s),
        first_layer="conv_proj",
        default_width=192,
        stackable=False,
        batch_norm=False,
        kernel_check=_patch_divides,
        cpu_images_per_second=60,
        activation_mb=8.0,
    ),
}


def stackable_models() -> list[str]:
    """Models whose seeds can be trained together (``seeds_per_job`` > 1)."""
    return [name for name, spec in MODELS.items() if spec.stackable]


def is_user_model(model: str) -> bool:
    """Whether `model` names a network outside the registry: torchvision:NAME, timm:NAME, file.py:builder or
    package.module:builder (every such spec has a colon; no registry name does)."""
    return ":" in model


def user_model_spec(model: str) -> ModelSpec:
    """The registry-like spec of a user model: its builder calls ``firstlayer.modelspec.build_grid_network``
    (those of kernel size and width the config gives, only where the builder names them); its first layer is the
    architecture's ``first_layer``, which validation fills in. Nothing is known about batch statistics, so it is
    never stacked; the throughput and memory figures are conservative (a ResNet-50 at 32x32 beats them)."""
    return ModelSpec(
        builder=lambda c, k, w, s: _modelspec().build_grid_network(
            model, num_classes=c, kernel_size=k, width=w, image_size=s
        ),
        first_layer="",  # the config's architectures.<arch>.first_layer
        default_width=0,  # the builder's own
        stackable=False,
        batch_norm=True,  # unknown: assumed, so that no two seeds share a process
        cpu_images_per_second=10,
        activation_mb=16.0,
    )


def model_spec(model: str) -> ModelSpec:
    """The registry entry of `model`, or the spec of a user model; ValueError listing the known models otherwise."""
    if is_user_model(model):
        return user_model_spec(model)
    if model not in MODELS:
        raise ValueError(
            f"unknown model {model!r}; allowed: {', '.join(MODELS)}, or torchvision:NAME, timm:NAME, "
            "path/to/file.py:builder, package.module:builder"
        )
    return MODELS[model]


def image_size_problem(model: str, image_size: int) -> str | None:
    """Why `model` cannot take images of side `image_size`, or None when it can."""
    least = model_spec(model).min_image_size
    return f"needs images of at least {least}x{least}, got {image_size}x{image_size}" if image_size < least else None


def kernel_problem(model: str, kernel_size: int, image_size: int) -> str | None:
    """Why `model` cannot have a k x k first layer on images of side `image_size`, or None when it can."""
    if kernel_size > image_size:
        return f"the kernel size {kernel_size} is larger than the image side {image_size}"
    check = model_spec(model).kernel_check
    return check(kernel_size, image_size) if check else None


def build_model(
    name: str, *, num_classes: int, kernel_size: int = 3, width: int | None = None, image_size: int = 32
) -> nn.Module:
    """A freshly initialised network of model `name` (init drawn from torch's global RNG: seed it around this call).

    `width` is the number of first-layer filters (the spec's ``default_width`` when None). A user model gets
    `kernel_size` and `width` only where its builder names them (the config's validation checked the rest)."""
    spec = model_spec(name)
    if is_user_model(name):
        return spec.builder(num_classes, kernel_size, width, image_size)
    if problem := image_size_problem(name, image_size) or kernel_problem(name, kernel_size, image_size):
        raise ValueError(f"{name}: {problem}")
    if spec.fixed_width and width not in (None, spec.default_width):
        raise ValueError(f"{name}: the width is fixed at {spec.default_width}, got {width}")
    return spec.builder(num_classes, kernel_size, width or spec.default_width, image_size)


def first_layer(model: nn.Module, name: str, path: str | None = None) -> nn.Conv2d:
    """The first-layer convolution of a network built by ``build_model(name, ...)``: module `path`, by default the
    registry's (a user model's is its validated architecture's ``first_layer``)."""
    from torch import nn

    path = path or model_spec(name).first_layer
    if not path:
        raise ValueError(f"{name}: a user model's first layer is the validated config's first_layer; none given")
    layer = model.get_submodule(path)
    if not isinstance(layer, nn.Conv2d) or layer.in_channels != 3:
        raise TypeError(f"{name}: {path} is not a 3-channel Conv2d but {layer}")
    return layer
