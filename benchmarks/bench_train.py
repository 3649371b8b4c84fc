"""Training step overhead: firstlayer's airbench-style ``train()`` against the published loop, re-implemented here
as the paper's code runs it (torchvision's CIFAR10 dataset and transforms: each uint8 image becomes a PIL image,
then ``ToTensor`` and ``Normalize``; a DataLoader with three workers, shuffled, last batch dropped; per step the
batch accuracy and ``loss.item()`` twice), on the same model, batch size, data and optimiser.

``train()`` is timed twice: in float32 throughout, and in its default precision (``auto``: bfloat16 autocast and
channels_last above a float32 first layer where the CPU computes bfloat16 natively, float32 elsewhere; the linear
CNN is float32 in every case). Target: >= 1.5x the baseline's images/s on CPU; ResNet-18 (CIFAR stem, bf16 +
channels_last, batch 512) >= 30,000 images/s on one GPU.
Run by hand: python benchmarks/bench_train.py [--steps 200] [--threads 2] [--repeats 2] [--models small_cnn linear]
[--resnet18 [--compile]]"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from firstlayer.precision import describe_precision, resolve_precision
from firstlayer.settings import TrainSettings
from firstlayer.train import init_model, train

#: The default shapes of the config's architectures (kernel 3, 10 classes, 32x32x3 images), SGD momentum 0.9.
MODELS = {
    "linear": {"width": 64, "batch_size": 64, "lr": 0.002},
    "small_cnn": {"width": 32, "batch_size": 64, "lr": 0.02},
}
MEAN = np.array([0.49, 0.48, 0.45])
STD = np.array([0.25, 0.24, 0.26])
TARGET, GPU_TARGET = 1.5, 30_000


class PublishedCifarStyle(Dataset):
    """What torchvision's CIFAR10 does per image (uint8 HWC array -> PIL image -> transform), with the published
    transform: ``ToTensor`` (to float in [0, 1], CHW) then ``Normalize`` per channel."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # CIFAR10.data is (n, 32, 32, 3) uint8
        self.labels = labels.tolist()
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN.tolist(), STD.tolist())])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def stand_in_data(n: int, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n random uint8 32x32x3 images and labels (speed does not depend on the pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8), torch.randint(0, classes, (n,))


def baseline(arch: str, cfg: dict, data: tuple[torch.Tensor, torch.Tensor], steps: int) -> float:
    """Images/s of the published loop: DataLoader(num_workers=3, shuffle=True, drop_last=True), per step the batch
    accuracy and two ``loss.item()`` (the loss list and the epoch sum), as the paper's ``train_model`` does."""
    model = init_model(arch, num_classes=10, kernel_size=3, width=cfg["width"], image_size=32, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
    loader = DataLoader(PublishedCifarStyle(*data), batch_size=cfg["batch_size"], shuffle=True, num_workers=3,
                        drop_last=True)  # fmt: skip
    losses, epoch_loss, correct, step = [], 0.0, torch.zeros(()), 0
    t0 = time.perf_counter()
    while step < steps:
        for x, y in loader:
            opt.zero_grad()
            out = model(x)
            loss = F.cross_entropy(out, y)
            with torch.no_grad():
                correct += (out.argmax(1) == y).float().mean()
            losses.append(loss.item())
            epoch_loss += loss.item()
            loss.backward()
            opt.step()
            step += 1
            if step == steps:
                break
    return steps * cfg["batch_size"] / (time.perf_counter() - t0)


def ours(
    arch: str, cfg: dict, data: tuple[torch.Tensor, torch.Tensor], steps: int, precision: str, device: str = "cpu"
) -> float:
    """Images/s of firstlayer's train(), the whole call (set-up and the step-0 and final evaluations included)."""
    model = init_model(arch, num_classes=10, kernel_size=3, width=cfg["width"], image_size=32, seed=0)
    settings = TrainSettings(steps=steps, lr=cfg["lr"], batch_size=cfg["batch_size"], train_eval_size=500,
                             eval_batch_size=500, device=device, precision=precision)  # fmt: skip
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
                             device="cuda", compile=compile_model, precision="auto")  # fmt: skip
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
    parser.add_argument("--images", type=int, default=50_000, help="stand-in training images (CIFAR's 50,000)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per side; the best counts")
    parser.add_argument("--resnet18", action="store_true", help="also ResNet-18 on the GPU, if there is one")
    parser.add_argument("--compile", action="store_true", help="torch.compile the ResNet-18 forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # the published loop's three workers on a smaller machine: measured as it is, without the advice
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    data = stand_in_data(args.images)
    print(f"{args.images} stand-in 32x32x3 uint8 images, 10 classes, {args.steps} steps, {args.threads} threads, "
          f"best of {args.repeats}")  # fmt: skip
    auto = {arch: describe_precision(resolve_precision("auto", torch.device("cpu"), arch)) for arch in args.models}
    print(f"{'model':9s} {'baseline img/s':>15s} {'train() float32':>16s} {'ratio':>6s} {'train() auto':>13s} "
          f"{'ratio':>6s}  target >= {TARGET}x")  # fmt: skip
    for arch in args.models:
        cfg = MODELS[arch]
        for precision in ("float32", "auto"):  # warm-up: oneDNN primitives, allocator
            ours(arch, cfg, data, 5, precision)
        base = fp32 = fast = 0.0
        for _ in range(args.repeats):  # alternate: a busy machine slows all alike
            base = max(base, baseline(arch, cfg, data, args.steps))
            fp32 = max(fp32, ours(arch, cfg, data, args.steps, "float32"))
            fast = max(fast, ours(arch, cfg, data, args.steps, "auto"))
        verdicts = ["ok" if rate / base >= TARGET else "BELOW" for rate in (fp32, fast)]
        print(f"{arch:9s} {base:15,.0f} {fp32:16,.0f} {fp32 / base:5.2f}x {fast:13,.0f} {fast / base:5.2f}x  "
              f"float32 {verdicts[0]}, auto {verdicts[1]} (auto: {auto[arch]})")  # fmt: skip
    if args.resnet18:
        resnet18_gpu(args.steps, args.compile)


if __name__ == "__main__":
    main()
