"""The networks the registry in ``firstlayer.models`` builds (imported only when a network is built: torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.vgg import make_layers


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


class ShortcutA(nn.Module):
    """The parameter-free shortcut of He et al. 2016 (option A, their CIFAR choice): subsample by `stride` and pad
    the new channels with zeros."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al. 2016, section 4.2): a k x k conv of `width` filters (16 in the paper), three
    stages of three torchvision BasicBlocks with width, 2*width, 4*width channels (the 2nd and 3rd start with
    stride 2, through option-A shortcuts), global average pooling, linear. 0.27 M parameters at width 16."""

    def __init__(self, num_classes: int, kernel_size: int = 3, width: int = 16, blocks_per_stage: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, channels = [], width
        for i, out in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                shortcut = ShortcutA(channels, out, stride) if stride != 1 or channels != out else None
                blocks.append(BasicBlock(channels, out, stride, downsample=shortcut))
                channels = out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        # torchvision's ResNet init (as for resnet18): Kaiming fan_out convs, BatchNorm at identity
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


#: torchvision's VGG-11 configuration "A": conv channels, "M" = 2x2 max-pool.
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11BN(nn.Module):
    """VGG-11 with BatchNorm: torchvision's ``features`` stack (``make_layers`` of configuration A), every channel
    count scaled by width / 64 (64 = torchvision's), the first conv k x k (3x3 in VGG).

    For 32x32 inputs the five max-pools leave a 1x1 map, so torchvision's 7x7 average pool and 4096-wide
    three-layer classifier (123 M parameters, made for 224x224 ImageNet) are replaced by global average pooling
    and one Linear(8 * width, classes), the usual CIFAR VGG head. Init: torchvision VGG's (Kaiming fan_out convs,
    BatchNorm at identity, Linear N(0, 0.01) with zero bias)."""

    def __init__(self, num_classes: int, kernel_size: int = 3, width: int = 64) -> None:
        super().__init__()
        cfg = [v if v == "M" else v * width // 64 for v in VGG11]
        self.features = make_layers(cfg, batch_norm=True)
        self.features[0] = nn.Conv2d(3, cfg[0], kernel_size, padding=kernel_size // 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg[-2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


#: vit_tiny: ViT-Tiny's embedding size (192) and heads (3), with 4 encoder blocks instead of 12 (CPU-sized).
VIT_LAYERS, VIT_HEADS, VIT_MLP_RATIO = 4, 3, 4


def vit_tiny(num_classes: int, patch_size: int, width: int, image_size: int) -> nn.Module:
    """torchvision's VisionTransformer at `image_size`: a patch_size x patch_size, stride-patch_size Conv2d patch
    embedding of `width` channels (its first layer), a class token, 4 pre-norm encoder blocks of 3 heads, a
    linear head (torchvision's init: truncated-normal patch embedding, zero head). The patch size must divide the
    image side (``firstlayer.models.MODELS`` checks it before building)."""
    if width % VIT_HEADS:
        raise ValueError(f"vit_tiny: width {width} is not a multiple of its {VIT_HEADS} attention heads")
    return torchvision.models.VisionTransformer(
        image_size=image_size,
        patch_size=patch_size,
        num_layers=VIT_LAYERS,
        num_heads=VIT_HEADS,
        hidden_dim=width,
        mlp_dim=VIT_MLP_RATIO * width,
        num_classes=num_classes,
    )
