"""Networks and the rule that finds their first layer.

The first layer of each architecture is named in ``FIRST_LAYER`` (a module path for ``get_submodule``): it is
the convolution that sees the normalised image. Nothing is guessed from module order.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

ARCHITECTURES = ("linear", "small_cnn", "resnet18")

#: Module path of the first layer in each architecture built by ``build_model``.
FIRST_LAYER = {"linear": "conv", "small_cnn": "features.0", "resnet18": "conv1"}


class LinearCNN(nn.Module):
    """conv (k x k, `width` filters, no padding) -> flatten -> linear: a linear CNN, no nonlinearity."""

    def __init__(self, num_classes: int, kernel_size: int, width: int, image_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, kernel_size, bias=False)
        side = image_size - kernel_size + 1
        self.fc = nn.Linear(width * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class SmallCNN(nn.Module):
    """Three ReLU conv layers (the first k x k with `width` filters), each followed by pooling, then linear."""

    def __init__(self, num_classes: int, kernel_size: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, kernel_size, padding=kernel_size // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def resnet18(num_classes: int, kernel_size: int = 3) -> nn.Module:
    """torchvision's ResNet-18, CIFAR style: a stride-1 k x k stem (3x3 by default) and no max-pool."""
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size, stride=1, padding=kernel_size // 2, bias=False)
    # the same init torchvision gives its convolutions
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def build_model(
    name: str, *, num_classes: int, kernel_size: int = 3, width: int | None = None, image_size: int = 32
) -> nn.Module:
    """A freshly initialised network (init drawn from torch's global RNG: seed it around this call)."""
    if name == "linear":
        return LinearCNN(num_classes, kernel_size, width or 64, image_size)
    if name == "small_cnn":
        return SmallCNN(num_classes, kernel_size, width or 32)
    if name == "resnet18":
        return resnet18(num_classes, kernel_size)
    raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(ARCHITECTURES)}")


def first_layer(model: nn.Module, name: str) -> nn.Conv2d:
    """The first-layer convolution of a model built by ``build_model(name, ...)``."""
    layer = model.get_submodule(FIRST_LAYER[name])
    if not isinstance(layer, nn.Conv2d) or layer.in_channels != 3:
        raise TypeError(f"{name}: {FIRST_LAYER[name]} is not a 3-channel Conv2d but {layer}")
    return layer
