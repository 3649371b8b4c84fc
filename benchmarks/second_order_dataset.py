"""Is `labels: polarity` a dataset on which the linear theory's assumption holds at second order too, and is it learned?
Its Gaussian label information of both orders (I1: class patch means, I2: class patch covariances; with a null of
labels permuted across images) beside `texture` labels, at each kernel size; then the held-out accuracy of
config.yaml's small CNN (and the linear CNN, which can only use first-order information) trained on it.
Criterion, fixed before measuring: I1 and I2 excess not significant (p > 0.05) and held-out accuracy >= chance + 0.3.
Run by hand (about 7 min on 2 idle cores): python benchmarks/second_order_dataset.py [--steps 5000] [--seeds 0 1 2]
[--archs small_cnn linear] [--kernel-sizes 3 5 7] [--threads 2]; `--kernel-sizes` alone skips label information.

Last run (2-core EPYC, at first loaded by another job): I1 1.2e-6 / 2.1e-6 / 5.9e-6 nats per patch at k = 3 / 5 / 7
against a null of 2.2e-5 / 4.3e-5 / 8.9e-5 (p = 1), I2 < 4e-11 against 0.0074 / 0.025 / 0.063 (p = 1); textures
for comparison: I1 excess z ~ 20, I2 5.8 / 19 / 40 against 0.13 / 0.48 / 1.2. Small CNN held-out accuracy, seeds
0 / 1 / 2: 0.545 / 0.543 / 0.578 at step 300, 0.737 / 0.704 / 0.713 at 1000, 0.820 / 0.742 / 0.772 at 2000, 0.810 /
0.859 / 0.850 at 5000 (about 75 s a seed idle); the linear CNN stays at 0.47-0.50 while fitting 0.95 of the
training set."""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from firstlayer.datasets import EMBEDDED_PRESETS, channel_stats, make_embedded_dataset
from firstlayer.label_information import label_information_frames
from firstlayer.settings import TrainSettings
from firstlayer.train import train_seeds

#: The default's presets: polarity's source crops are the 256 train and 64 test crops per photo of `textures`, each
#: in both classes.
DATASETS = {name: EMBEDDED_PRESETS[name] for name in ("polarity", "textures")}
#: config.yaml's architecture entries (kernel size, width, batch, SGD with momentum 0.9, lr).
ARCHS = {
    "small_cnn": {"model": "small_cnn", "k": 3, "width": 32, "batch": 64, "lr": 0.02},
    "linear": {"model": "linear", "k": 3, "width": 64, "batch": 64, "lr": 0.002},
}
COLUMNS = ["dataset", "kernel_size", "images", "classes", "order", "value", "null_mean", "null_std", "excess", "z", "p"]


def information(kernel_sizes: list[int], draws: int) -> pd.DataFrame:
    """I1 and I2 (nats per patch) of each dataset's training images, with their permuted-label null."""
    rows = []
    for name, spec in DATASETS.items():
        x, y = make_embedded_dataset(**spec).split("train")
        mean, std = channel_stats(x)
        for k in kernel_sizes:
            _, summary = label_information_frames(x, y, k, mean, std, rng=np.random.default_rng(k), draws=draws)
            r = summary.iloc[0]
            for order in ("first_order", "second_order"):
                rows.append([name, k, len(x), r["classes"], order, *(r[f"{order}{s}"] for s in
                             ("", "_null_mean", "_null_std", "_excess", "_z", "_p"))])  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def accuracy(arch: str, steps: int, eval_steps: tuple[int, ...], seeds: list[int]) -> tuple[pd.DataFrame, float]:
    """Train `arch` on polarity labels -> (arch, seed, step, train/test accuracy) and wall seconds."""
    a = ARCHS[arch]
    ds = make_embedded_dataset(**DATASETS["polarity"])
    (x, y), (xt, yt) = ds.split("train"), ds.split("test")
    mean, std = channel_stats(x)
    data = (torch.from_numpy(x), torch.from_numpy(y)), (torch.from_numpy(xt), torch.from_numpy(yt))
    s = TrainSettings(steps=steps, lr=a["lr"], batch_size=a["batch"], optimizer="sgd", momentum=0.9, device="cpu",
                      eval_steps=eval_steps, train_eval_size=1024, log_every=10**9)  # fmt: skip
    kw = {"num_classes": ds.num_classes, "kernel_size": a["k"], "width": a["width"], "image_size": x.shape[-1]}
    start = time.perf_counter()
    results = train_seeds(a["model"], kw, *data, mean, std, s, seeds, log=lambda _: None)
    seconds = time.perf_counter() - start
    frames = []
    for seed, r in zip(seeds, results, strict=True):
        acc = r.metrics[r.metrics.metric.str.endswith("accuracy")]
        frames.append(acc.pivot(index="step", columns="metric", values="value").reset_index().assign(seed=seed))
    return pd.concat(frames).assign(arch=arch), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="*", default=["small_cnn", "linear"], choices=list(ARCHS))
    parser.add_argument("--steps", type=int, default=5000, help="training steps")
    parser.add_argument("--eval-steps", type=int, nargs="+", default=[300, 1000, 2000, 3000, 5000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--kernel-sizes", type=int, nargs="*", default=[3, 5, 7], help="label information at these")
    parser.add_argument("--draws", type=int, default=20, help="null draws (labels permuted across images)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.kernel_sizes:
        start = time.perf_counter()
        info = information(args.kernel_sizes, args.draws)
        print(f"Gaussian label information, nats per patch, {args.draws} null draws "
              f"({time.perf_counter() - start:.0f} s):")  # fmt: skip
        print(info.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    eval_steps = tuple(sorted({s for s in args.eval_steps if s <= args.steps} | {args.steps}))
    for arch in args.archs:
        curve, seconds = accuracy(arch, args.steps, eval_steps, args.seeds)
        print(f"\npolarity, {arch}, chance 0.50, target >= 0.80 ({seconds:.0f} s for {len(args.seeds)} seed(s), "
              f"{args.threads} thread(s)):")  # fmt: skip
        print(curve.pivot(index="step", columns="seed", values=["train_accuracy", "test_accuracy"]).round(3))


if __name__ == "__main__":
    main()
