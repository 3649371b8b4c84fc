"""A network of a user's own in the smoke configuration (`model: tests/configs/user_net.py:build`): its first layer is
a 7x7 conv with stride 2 and padding 3, a kernel size no built-in network of the smoke grid has, so the workflow
computes a 7x7 patch PCA for it alone. It is defined after the layer the image does not enter first, so only running
the network finds it."""

from __future__ import annotations

from torch import nn


class UserNet(nn.Module):
    """7x7/2 stem of `width` filters, one 3x3 conv of 2 x `width`, global pooling, linear."""

    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
        self.stem = nn.Conv2d(3, width, 7, stride=2, padding=3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


def build(num_classes: int, width: int = 8) -> nn.Module:
    """The builder the workflow calls: the data's number of classes, and the architecture's `width` when it gives one
    (it names no kernel_size: the config's is read from the network)."""
    return UserNet(num_classes, width)
