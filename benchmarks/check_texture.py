"""The two numbers that make `labels: texture` a valid "true vs random labels" dataset (docs/method.md, A learnable
label-neutral dataset): its label information (between-class share of the patch variance, at each kernel size)
beside `photo` and `rotation` labels, and the held-out accuracy of a network trained on it at log-spaced steps
(saturation curve), with its images/s. Run by hand:
python benchmarks/check_texture.py [--arch small_cnn] [--labels true] [--steps 150] [--seeds 0 1] [--threads 1]"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from firstlayer.analysis import label_information, label_information_summary
from firstlayer.datasets import channel_stats, make_embedded_dataset
from firstlayer.patches import patch_moments, patch_pca
from firstlayer.settings import TrainSettings, log_schedule
from firstlayer.train import TrainResult, init_model, train, train_seeds

#: The datasets compared: texture as configs/embedded_long.yaml defines it, photo and rotation as config.yaml does.
DATASETS = {
    "textures": {"labels": "texture", "train_per_class": 256, "test_per_class": 64, "seed": 2},
    "photos": {"labels": "photo", "train_per_class": 256, "test_per_class": 64, "seed": 0},
    "rotations": {"labels": "rotation", "train_per_class": 512, "test_per_class": 128, "seed": 1},
}
#: config.yaml's architecture entries (kernel size, width, batch, optimiser, lr, weight decay, augmentation).
ARCHS = {
    "linear": {"model": "linear", "k": 3, "width": 64, "batch": 64, "optimizer": "sgd", "lr": 0.002},
    "small_cnn": {"model": "small_cnn", "k": 3, "width": 32, "batch": 64, "optimizer": "sgd", "lr": 0.02},
    "small_cnn_k5_aug": {"model": "small_cnn", "k": 5, "width": 32, "batch": 64, "optimizer": "adam", "lr": 0.001,
                         "augment": True},
    "resnet20": {"model": "resnet20", "k": 3, "width": None, "batch": 32, "optimizer": "sgd", "lr": 0.05, "wd": 5e-4},
    "vgg11_bn": {"model": "vgg11_bn", "k": 3, "width": 32, "batch": 32, "optimizer": "sgd", "lr": 0.01, "wd": 5e-4},
}  # fmt: skip


def label_shares(kernel_sizes: list[int]) -> pd.DataFrame:
    """Between-class share of the patch variance of each dataset's training crops, per kernel size."""
    frames = []
    for name, spec in DATASETS.items():
        x, y = make_embedded_dataset(**spec).split("train")
        mean, std = channel_stats(x)
        for k in kernel_sizes:
            evals, basis = patch_pca(patch_moments(x, mean, std, k).covariance())
            frames.append(label_information(x, y, k, mean, std, evals, basis).assign(dataset=name, kernel_size=k))
    return label_information_summary(pd.concat(frames))


def train_textures(arch: str, seeds: list[int], **settings: Any) -> tuple[list[TrainResult], np.ndarray, tuple]:
    """Train config.yaml's `arch` on textures from each seed (``settings``: steps, labels and any other TrainSettings
    field) -> the results, the training images and their channel (mean, std)."""
    a = ARCHS[arch]
    ds = make_embedded_dataset(**DATASETS["textures"])
    (x, y), (xt, yt) = ds.split("train"), ds.split("test")
    mean, std = channel_stats(x)
    data = (torch.from_numpy(x), torch.from_numpy(y)), (torch.from_numpy(xt), torch.from_numpy(yt))
    s = TrainSettings(lr=a["lr"], batch_size=a["batch"], optimizer=a["optimizer"], weight_decay=a.get("wd", 0.0),
                      augment=a.get("augment", False), device="cpu", log_every=10**9, **settings)  # fmt: skip
    kw = {"num_classes": ds.num_classes, "kernel_size": a["k"], "width": a["width"], "image_size": x.shape[-1]}
    if a["model"] in ("linear", "small_cnn"):
        return train_seeds(a["model"], kw, *data, mean, std, s, seeds, log=lambda _: None), x, (mean, std)
    results = [train(init_model(a["model"], seed=seed, **kw), a["model"], *data, mean, std, s, log=lambda _: None)
               for seed in seeds]  # fmt: skip
    return results, x, (mean, std)


def accuracy_curve(arch: str, labels: str, steps: int, seeds: list[int], points: int) -> tuple[pd.DataFrame, float]:
    """Train `arch` on textures -> (step, seed, train_accuracy, test_accuracy) table and images/s."""
    results, _, _ = train_textures(arch, seeds, steps=steps, labels=labels, eval_steps=log_schedule(steps, points),
                                   train_eval_size=512)  # fmt: skip
    rows = []
    for seed, r in zip(seeds, results, strict=True):
        acc = r.metrics[r.metrics.metric.str.endswith("accuracy")]
        rows.append(acc.pivot(index="step", columns="metric", values="value").reset_index().assign(seed=seed))
    return pd.concat(rows), float(np.mean([r.extra["images_per_second"] for r in results]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="small_cnn", choices=list(ARCHS), help="architecture (config.yaml's)")
    parser.add_argument("--labels", default="true", choices=["true", "random"], help="label mode")
    parser.add_argument("--steps", type=int, default=150, help="training steps (config.yaml: 150 for small_cnn)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    parser.add_argument("--eval-points", type=int, default=6, help="log-spaced accuracy evaluations")
    parser.add_argument("--kernel-sizes", type=int, nargs="*", default=[3, 5, 7], help="label information at these")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.kernel_sizes:
        print("label information (between-class share of the training patches' variance):")
        print(label_shares(args.kernel_sizes).to_string(index=False, float_format=lambda v: f"{v:.6f}"))
    start = time.perf_counter()
    curve, rate = accuracy_curve(args.arch, args.labels, args.steps, args.seeds, args.eval_points)
    print(f"\ntextures, {args.arch}, {args.labels} labels, chance 0.10 ({time.perf_counter() - start:.0f} s, "
          f"{rate:,.0f} images/s with {args.threads} thread(s)):")  # fmt: skip
    print(curve.pivot(index="step", columns="seed").round(3).to_string())


if __name__ == "__main__":
    main()
