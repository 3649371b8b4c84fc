"""The registry of built-in networks: ``register_model`` puts each builder in ``MODELS`` with what the workflow
knows about it (read by the config schema and checks, the trainer and the resource estimates). Adding a network is
one registered builder here (its ``nn.Module`` in ``firstlayer.networks``). Model specs of any kind (a built-in
name, ``torchvision:NAME``, ``timm:NAME``, ``file.py:builder``, ``package.module:builder``) resolve to a
``ModelSpec`` of the same shape in ``firstlayer.modelspec``, which imports this module (never the reverse).

Importing this module imports no torch (parsing the workflow must stay fast): each builder imports
``firstlayer.networks`` when it is called.

A network's first layer is found by running it (``firstlayer.discovery``: the Conv2d that the image itself goes
into); a built-in entry pins it as a module path for ``get_submodule`` (a test holds each pin against discovery):

- ``linear``: ``conv``, the only convolution.
- ``small_cnn``: ``features.0``, the head of the ``features`` stack.
- ``resnet18``, ``resnet20``: ``conv1``, the stem; the residual stages start after it (and after its BatchNorm).
- ``vgg11_bn``: ``features.0``, the first conv of torchvision's VGG ``features`` stack.
- ``vit_tiny``: ``conv_proj``, the patch embedding: a k x k, stride-k convolution whose k*k*3 filters act on
  non-overlapping patches, the same patch vectors (channel, row, column) as a conv layer's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

#: The one builder signature: (num_classes, kernel_size, width, image_size) -> a freshly initialised network. A
#: built-in's builder gets every argument; a user model's gets None for a kernel size or width the config leaves
#: to the network.
Builder = Callable[[int, int | None, int | None, int], "nn.Module"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the workflow knows about one model: its builder and the figures the config and jobs read."""

    builder: Builder
    #: first-layer filters when the config gives no `width` (0: a user model's builder decides)
    default_width: int
    #: seeds can be trained together in one process (``train_seeds``): no per-seed BatchNorm buffers
    stackable: bool
    batch_norm: bool
    #: CPU training throughput at 32x32, images/s on 2 cores (conservative: the runtime request)
    cpu_images_per_second: float
    #: MiB of float32 activations per 32x32 training image, forward and backward (the CPU memory request)
    activation_mb: float
    #: module path of the first-layer Conv2d when the entry pins it (a built-in); None: found by discovery
    first_layer: str | None = None
    #: the width cannot change (`width` must be absent or equal `default_width`)
    fixed_width: bool = False
    min_image_size: int = 1
    #: the network is linear in its input: it trains in float32 and steps in input space, as x . G + b
    linear: bool = False
    #: (kernel_size, image side) -> why the model cannot take them, or None
    kernel_check: Callable[[int, int], str | None] | None = None


#: The built-in networks by name, in registration order (the schema lists them so).
MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, **entry: object) -> Callable[[Builder], Builder]:
    """Decorator: register a builder of the one signature ``Builder`` as built-in model `name`, with the other
    ``ModelSpec`` fields as keywords (``first_layer`` pins its first layer)."""

    def register(builder: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice; pick another name")
        if ":" in name:
            raise ValueError(f"model name {name!r} has a colon, which marks a user model's spec; pick another name")
        MODELS[name] = ModelSpec(builder=builder, **entry)
        return builder

    return register


def _patch_divides(kernel_size: int, side: int) -> str | None:
    """A ViT's patches tile the image: the patch size must divide the image side."""
    return f"the patch size {kernel_size} does not divide the image side {side}" if side % kernel_size else None


@register_model(
    "linear",
    first_layer="conv",
    default_width=64,
    stackable=True,
    batch_norm=False,
    cpu_images_per_second=2000,
    activation_mb=0.05,
    linear=True,
)
def linear(num_classes: int, kernel_size: int, width: int, image_size: int) -> nn.Module:
    """One k x k conv, no padding, then a linear head: a linear CNN (``networks.LinearCNN``)."""
    from firstlayer.networks import LinearCNN

    return LinearCNN(num_classes, kernel_size, width, image_size)


@register_model(
    "small_cnn",
    first_layer="features.0",
    default_width=32,
    stackable=True,
    batch_norm=False,
    cpu_images_per_second=500,
    activation_mb=0.5,
)
def small_cnn(num_classes: int, kernel_size: int, width: int, image_size: int) -> nn.Module:
    """Three ReLU conv layers and a linear head (``networks.SmallCNN``)."""
    from firstlayer.networks import SmallCNN

    return SmallCNN(num_classes, kernel_size, width)


@register_model(
    "resnet18",
    first_layer="conv1",
    default_width=64,
    fixed_width=True,  # torchvision's stem
    stackable=False,
    batch_norm=True,
    cpu_images_per_second=20,
    activation_mb=8.0,
)
def resnet18(num_classes: int, kernel_size: int, width: int, image_size: int) -> nn.Module:
    """torchvision's ResNet-18 with a CIFAR stem (``networks.resnet18``); its width is fixed at 64."""
    from firstlayer.networks import resnet18

    return resnet18(num_classes, kernel_size)


@register_model(
    "resnet20",
    first_layer="conv1",
    default_width=16,
    stackable=False,
    batch_norm=True,
    cpu_images_per_second=150,
    activation_mb=1.5,
)
def resnet20(num_classes: int, kernel_size: int, width: int, image_size: int) -> nn.Module:
    """He et al.'s CIFAR ResNet-20 (``networks.ResNet20``)."""
    from firstlayer.networks import ResNet20

    return ResNet20(num_classes, kernel_size, width)


@register_model(
    "vgg11_bn",
    first_layer="features.0",
    default_width=64,
    stackable=False,
    batch_norm=True,
    min_image_size=32,  # five 2x2 max-pools
    cpu_images_per_second=60,
    activation_mb=4.0,
)
def vgg11_bn(num_classes: int, kernel_size: int, width: int, image_size: int) -> nn.Module:
    """VGG-11 with BatchNorm and a CIFAR head (``networks.VGG11BN``)."""
    from firstlayer.networks import VGG11BN

    return VGG11BN(num_classes, kernel_size, width)


@register_model(
    "vit_tiny",
    first_layer="conv_proj",
    default_width=192,
    stackable=False,
    batch_norm=False,
    kernel_check=_patch_divides,
    cpu_images_per_second=60,
    activation_mb=8.0,
)
def vit_tiny(num_classes: int, kernel_size: int, width: int, image_size: int) -> nn.Module:
    """A 4-block ViT-Tiny whose patch size is the kernel size (``networks.vit_tiny``)."""
    from firstlayer.networks import vit_tiny

    return vit_tiny(num_classes, kernel_size, width, image_size)


def stackable_models() -> list[str]:
    """Models whose seeds can be trained together (``seeds_per_job`` > 1)."""
    return [name for name, spec in MODELS.items() if spec.stackable]


def is_user_model(model: str) -> bool:
    """Whether `model` names a network outside the registry: torchvision:NAME, timm:NAME, file.py:builder or
    package.module:builder (every such spec has a colon; no registry name does)."""
    return ":" in model


def image_size_problem(model: str, image_size: int) -> str | None:
    """Why built-in `model` cannot take images of side `image_size`, or None when it can."""
    least = MODELS[model].min_image_size
    return f"needs images of at least {least}x{least}, got {image_size}x{image_size}" if image_size < least else None


def kernel_problem(model: str, kernel_size: int, image_size: int) -> str | None:
    """Why built-in `model` cannot have a k x k first layer on images of side `image_size`, or None when it can."""
    if kernel_size > image_size:
        return f"the kernel size {kernel_size} is larger than the image side {image_size}"
    check = MODELS[model].kernel_check
    return check(kernel_size, image_size) if check else None


def default_kernel(model: str, image_size: int) -> int:
    """The kernel size a built-in gets when none is given: 3, else a patch size 4 or 8 that fits the images, else
    the smallest that does (3 when none does: building then says why)."""
    fits = (k for k in (3, 4, 8, *range(2, image_size + 1)) if kernel_problem(model, k, image_size) is None)
    return next(fits, 3)


def first_layer(model: nn.Module, name: str, path: str | None = None, image_size: int = 32) -> nn.Conv2d:
    """The first-layer convolution of a network of model spec `name`: module `path` when given, else the registry's
    pin of a built-in, else the Conv2d the input enters (``firstlayer.discovery``, on `image_size` images)."""
    from firstlayer.discovery import FirstLayerError, check_first_layer, find_first_layer

    path = path or (MODELS[name].first_layer if name in MODELS else None)
    try:
        if path is None:
            return find_first_layer(model, image_size=image_size).module
        return check_first_layer(model, path)
    except FirstLayerError as error:
        raise FirstLayerError(f"{name}: {error}") from None


#: Names that moved to ``firstlayer.modelspec``, which resolves every kind of spec (this module never imports it).
MOVED = ("build_model", "model_spec")


def __getattr__(name: str) -> object:
    """A clear ImportError for a name that moved to ``firstlayer.modelspec`` (importing it from here would be a
    cycle)."""
    if name in MOVED:
        raise ImportError(f"firstlayer.models.{name} moved: write `from firstlayer.modelspec import {name}`")
    raise AttributeError(f"module 'firstlayer.models' has no attribute {name!r}")
