"""Several seeds in one process: N sequential ``train()`` runs against one ``train_seeds()`` call, in the same
process, for the linear CNN and the small CNN at their default shapes (32x32x3 uint8 stand-in images, 10 classes,
SGD momentum 0.9), with the same torch thread count. Images are counted as steps x batch x seeds over each side's
wall time. ``train_seeds`` stacks the linear CNN's seeds in input space (target: >= 2x the images/s of the
sequential runs, every seed's first-layer trajectory the same to float rounding); other networks' seeds it trains
one after another, so their ratio is about 1x and their runs bitwise the sequential ones. Both sides compute in
``--precision`` (default auto: bfloat16 above a float32 first layer on a CPU with native bfloat16; the linear CNN is
float32 in every case). Run by hand:
python benchmarks/bench_seeds.py [--seeds 8] [--steps 200] [--threads 2] [--repeats 1] [--models linear small_cnn]
[--precision auto]"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from firstlayer.modelspec import model_spec
from firstlayer.precision import PRECISIONS, describe_precision, resolve_precision
from firstlayer.settings import TrainSettings, log_schedule
from firstlayer.train import TrainResult, init_model, train, train_seeds

MODELS = {
    "linear": {"width": 64, "batch_size": 64, "lr": 0.002},
    "small_cnn": {"width": 32, "batch_size": 64, "lr": 0.02},
}
MEAN = np.array([0.49, 0.48, 0.45])
STD = np.array([0.25, 0.24, 0.26])
TARGET = 2.0


def max_relative_difference(a: TrainResult, b: TrainResult) -> float:
    """Largest |a - b| over every snapshot of a seed's first layer, relative to that snapshot's largest weight."""
    assert list(a.snapshots) == list(b.snapshots)
    return max(float((a.snapshots[k] - b.snapshots[k]).abs().max() / a.snapshots[k].abs().max()) for k in a.snapshots)


def verdict(arch: str, ratio: float) -> str:
    """Stacked seeds (the linear CNN) must reach the target; seeds in turn only say how they compare."""
    if not model_spec(arch).linear:
        return "one after another"
    return "ok" if ratio >= TARGET else "BELOW"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="seeds trained (N)")
    parser.add_argument("--steps", type=int, default=200, help="training steps per seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both sides)")
    parser.add_argument("--models", nargs="+", default=["linear", "small_cnn"], choices=sorted(MODELS))
    parser.add_argument("--images", type=int, default=5000, help="stand-in training images")
    parser.add_argument("--repeats", type=int, default=1, help="alternating measurements per side; the best counts")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="training precision (both sides)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (args.images,), generator=g)
    data, test = (x, y), (x[:1000], y[:1000])
    seeds = list(range(args.seeds))
    print(f"{args.images} stand-in 32x32x3 uint8 images, 10 classes, {args.steps} steps, {args.seeds} seeds, "
          f"{args.threads} threads, best of {args.repeats}, precision {args.precision}")  # fmt: skip
    print(f"{'model':9s} {'sequential img/s':>17s} {'train_seeds img/s':>18s} {'ratio':>7s} {'max rel diff':>13s}"
          f"  target (stacked) >= {TARGET}x")  # fmt: skip
    for arch in args.models:
        cfg = MODELS[arch]
        kw = {"num_classes": 10, "kernel_size": 3, "width": cfg["width"], "image_size": 32}
        settings = TrainSettings(steps=args.steps, lr=cfg["lr"], batch_size=cfg["batch_size"], momentum=0.9,
                                 snapshot_steps=log_schedule(args.steps, 8), eval_steps=log_schedule(args.steps, 4),
                                 train_eval_size=1024, eval_batch_size=512, precision=args.precision)  # fmt: skip
        amp = resolve_precision(args.precision, torch.device("cpu"), arch)
        quiet = {"log": lambda _: None}
        warm = dataclasses.replace(settings, steps=3, snapshot_steps=(), eval_steps=())
        train(init_model(arch, seed=0, **kw), arch, data, test, MEAN, STD, warm, **quiet)
        train_seeds(arch, kw, data, test, MEAN, STD, warm, seeds[:2], **quiet)
        t_alone = t_together = np.inf
        for _ in range(args.repeats):  # alternate the two: a busy machine slows both alike
            t0 = time.perf_counter()
            alone = [
                train(init_model(arch, seed=s, **kw), arch, data, test, MEAN, STD,
                      dataclasses.replace(settings, seed=s), **quiet)
                for s in seeds
            ]  # fmt: skip
            t_alone = min(t_alone, time.perf_counter() - t0)
            t0 = time.perf_counter()
            together = train_seeds(arch, kw, data, test, MEAN, STD, settings, seeds, **quiet)
            t_together = min(t_together, time.perf_counter() - t0)
        images = args.steps * cfg["batch_size"] * args.seeds
        ratio = t_alone / t_together
        diff = max(max_relative_difference(a, b) for a, b in zip(alone, together, strict=True))
        same_acc = all(
            np.array_equal(a.metrics.value[a.metrics.metric != "loss"], b.metrics.value[b.metrics.metric != "loss"])
            for a, b in zip(alone, together, strict=True)
        )
        print(f"{arch:9s} {images / t_alone:17,.0f} {images / t_together:18,.0f} {ratio:6.2f}x {diff:13.1e}  "
              f"{verdict(arch, ratio)}; accuracies identical: {same_acc}; "
              f"{describe_precision(amp)}")  # fmt: skip


if __name__ == "__main__":
    main()
