"""Training step overhead: firstlayer's airbench-style ``train()`` against the published style (a Dataset that
converts and normalises each uint8 image on its own, a DataLoader with two workers, ``loss.item()`` every step), on
the same model, batch size, data and optimiser. Target: >= 1.5x the baseline's images/s on CPU; ResNet-18 (CIFAR
stem, bf16 + channels_last, batch 512) >= 30,000 images/s on one GPU.
Run by hand: python benchmarks/bench_train.py [--steps 200] [--threads 2] [--repeats 2] [--models small_cnn linear]
[--resnet18 [--compile]]"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from firstlayer.train import TrainSettings, init_model, train

#: The default shapes of the config's architectures (kernel 3, 10 classes, 32x32x3 images), SGD momentum 0.9.
MODELS = {
    "linear": {"width": 64, "batch_size": 64, "lr": 0.002},
    "small_cnn": {"width": 32, "batch_size": 64, "lr": 0.02},
}
MEAN = np.array([0.49, 0.48, 0.45])
STD = np.array([0.25, 0.24, 0.26])
TARGET, GPU_TARGET = 1.5, 30_000


class NormalisedImages(Dataset):
    """The published way: one uint8 image at a time -> float in [0, 1] -> per-channel Normalize."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.normalize = transforms.Normalize(MEAN.tolist(), STD.tolist())

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.normalize(self.images[i].float() / 255), self.labels[i]


def stand_in_data(n: int, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n random uint8 32x32x3 images and labels (speed does not depend on the pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), torch.randint(0, classes, (n,))


def baseline(arch: str, cfg: dict, data: tuple[torch.Tensor, torch.Tensor], steps: int) -> float:
    """Images/s of the published loop: DataLoader(num_workers=2, shuffle=True, drop_last=True), .item() per step."""
    model = init_model(arch, num_classes=10, kernel_size=3, width=cfg["width"], image_size=32, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
    loader = DataLoader(NormalisedImages(*data), batch_size=cfg["batch_size"], shuffle=True, num_workers=2,
                        drop_last=True)  # fmt: skip
    losses, step = [], 0
    t0 = time.perf_counter()
    while step < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step == steps:
                break
    return steps * cfg["batch_size"] / (time.perf_counter() - t0)


def ours(arch: str, cfg: dict, data: tuple[torch.Tensor, torch.Tensor], steps: int, device: str = "cpu") -> float:
    """Images/s of firstlayer's train(), the whole call (set-up and the step-0 and final evaluations included)."""
    model = init_model(arch, num_classes=10, kernel_size=3, width=cfg["width"], image_size=32, seed=0)
    settings = TrainSettings(steps=steps, lr=cfg["lr"], batch_size=cfg["batch_size"], train_eval_size=500,
                             eval_batch_size=500, device=device)  # fmt: skip
    test = (data[0][:500], data[1][:500])
    t0 = time.perf_counter()
    train(model, arch, data, test, MEAN, STD, settings, log=lambda _: None)
    return steps * cfg["batch_size"] / (time.perf_counter() - t0)


def resnet18_gpu(steps: int, compile_model: bool) -> None:
    """ResNet-18 images/s through train() on the GPU (bf16 autocast + channels_last), batch 512."""
    if not torch.cuda.is_available():
        print(f"resnet18 : no GPU available (target {GPU_TARGET:,} images/s on one GPU)")
        return
    data = stand_in_data(50_000)
    test = (data[0][:1000], data[1][:1000])
    settings = TrainSettings(steps=steps, lr=0.05, batch_size=512, train_eval_size=1000, eval_batch_size=1000,
                             device="cuda", compile=compile_model)  # fmt: skip
    warm = dataclasses.replace(settings, steps=20)
    model = init_model("resnet18", num_classes=10, kernel_size=3, width=None, image_size=32, seed=0)
    train(model, "resnet18", data, test, MEAN, STD, warm, log=lambda _: None)  # cuDNN autotune, compile
    torch.cuda.synchronize()
    r = train(model, "resnet18", data, test, MEAN, STD, settings, log=lambda _: None)
    torch.cuda.synchronize()
    rate = steps * 512 / r.seconds
    name = torch.cuda.get_device_name()
    print(f"resnet18 : {rate:12,.0f} images/s on {name} (target {GPU_TARGET:,}; compile={compile_model})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="training steps per measurement")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process (both)")
    parser.add_argument("--models", nargs="+", default=["small_cnn", "linear"], choices=sorted(MODELS))
    parser.add_argument("--images", type=int, default=5000, help="stand-in training images")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per side; the best counts")
    parser.add_argument("--resnet18", action="store_true", help="also ResNet-18 on the GPU, if there is one")
    parser.add_argument("--compile", action="store_true", help="torch.compile the ResNet-18 forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = stand_in_data(args.images)
    print(f"{args.images} stand-in 32x32x3 uint8 images, 10 classes, {args.steps} steps, {args.threads} threads, "
          f"best of {args.repeats}")  # fmt: skip
    print(f"{'model':9s} {'baseline img/s':>15s} {'train() img/s':>15s} {'ratio':>7s}  target >= {TARGET}x")
    for arch in args.models:
        cfg = MODELS[arch]
        ours(arch, cfg, data, 5)  # warm-up: oneDNN primitives, allocator
        base = fast = 0.0
        for _ in range(args.repeats):  # alternate the two: a busy machine slows both alike
            base = max(base, baseline(arch, cfg, data, args.steps))
            fast = max(fast, ours(arch, cfg, data, args.steps))
        verdict = "ok" if fast / base >= TARGET else "BELOW"
        print(f"{arch:9s} {base:15,.0f} {fast:15,.0f} {fast / base:6.2f}x  {verdict}")
    if args.resnet18:
        resnet18_gpu(args.steps, args.compile)


if __name__ == "__main__":
    main()
