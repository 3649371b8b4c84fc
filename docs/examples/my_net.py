"""A network of your own for `firstlayer profile docs/examples/my_net.py:build`, and a short training that saves
the checkpoints the README's example profiles: `python docs/examples/my_net.py` writes my_net_init.pt (W0, a bare
state_dict) and my_net.pt (the trained network in a Lightning-style checkpoint, keys prefixed by `model.`)."""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn


class MyNet(nn.Module):
    """A small CNN: a 5x5 stem of 16 filters, a 3x3 conv stage, global pooling, linear."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(32, num_classes)  # defined first: module order does not decide the first layer
        self.stem = nn.Conv2d(3, 16, 5, padding=2)
        self.body = nn.Sequential(
            nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)).flatten(1))


def build(num_classes: int = 10) -> nn.Module:
    """The builder `firstlayer profile` calls (with the data's number of classes)."""
    return MyNet(num_classes)


def train(steps: int = 60, seed: int = 0) -> None:
    """Train on the embedded rotations (SGD, batch 64), saving W0 and the trained weights in the working folder."""
    from firstlayer.datasets import channel_stats, embedded_preset
    from firstlayer.patches import normalise

    data = embedded_preset("rotations")
    images, labels = (torch.from_numpy(a) for a in data.split("train"))
    mean, std = (torch.from_numpy(a) for a in channel_stats(data.split("train")[0]))
    torch.manual_seed(seed)
    model = build(data.num_classes)
    torch.save(model.state_dict(), "my_net_init.pt")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    for step in range(steps):
        batch = order[(step * 64) % (len(images) - 64) :][:64]
        loss = F.cross_entropy(model(normalise(images[batch], mean, std, torch.float32)), labels[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 15 == 0 or step == steps - 1:
            print(f"step {step + 1}/{steps}: loss {loss.item():.3f}", file=sys.stderr)
    torch.save({"epoch": 1, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, "my_net.pt")
    print("wrote my_net_init.pt and my_net.pt")


if __name__ == "__main__":
    train()
