"""Why the first layer stays float32 under mixed precision: train the small CNN on the embedded rotations dataset
three ways from the same seed with ``train()`` (float32 throughout; bfloat16 above a float32 first layer, the
``auto`` default on hardware with native bfloat16; and, for comparison only, bfloat16 everywhere, the first layer
included) and compare each run's W - W0 energy profile with the float32 run's, component band by component band.
A second float32 seed shows how far seeds differ. Run by hand:
python benchmarks/check_precision.py [--kernel-size 7] [--steps 300] [--threads 2]"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections.abc import Iterator

import numpy as np
import torch

import firstlayer.train
from firstlayer.datasets import channel_stats, make_embedded_dataset
from firstlayer.energy import energy_profile
from firstlayer.patches import patch_moments, patch_pca
from firstlayer.settings import TrainSettings
from firstlayer.train import init_model, train


@contextlib.contextmanager
def rounded_first_layer(conv: torch.nn.Module | None) -> Iterator[None]:
    """Stands in for ``float32_first_layer``: leaves the first layer to autocast (bfloat16 everywhere)."""
    yield


def profile(arch_kw: dict, data, test, mean, std, basis, settings: TrainSettings) -> np.ndarray:
    model = init_model("small_cnn", **arch_kw, seed=settings.seed)
    r = train(model, "small_cnn", data, test, mean, std, settings, log=lambda _: None)
    change = (r.snapshots[settings.steps] - r.snapshots[0]).flatten(1).double().numpy()
    return energy_profile(change, basis)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel-size", type=int, default=7, help="first-layer kernel size (3, 5, 7)")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps (batch 64, lr 0.02, momentum 0.9)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    k = args.kernel_size
    ds = make_embedded_dataset(labels="rotation", train_per_class=512, test_per_class=64, seed=1)
    split = ds.manifest["split"].to_numpy()
    labels = torch.tensor(ds.manifest["label"].to_numpy())
    x_train, x_test = ds.images[split == "train"], ds.images[split == "test"]
    data = (torch.from_numpy(x_train), labels[split == "train"])
    test = (torch.from_numpy(x_test), labels[split == "test"])
    mean, std = channel_stats(x_train)
    evals, basis = patch_pca(patch_moments(x_train, mean, std, k).covariance())
    print(f"rotations: {len(x_train)} training crops; {3 * k * k} components, eigenvalues {evals[0]:.3g} .. "
          f"{evals[-1]:.3g}; small CNN, {args.steps} steps")  # fmt: skip
    arch_kw = {"num_classes": 4, "kernel_size": k, "width": 32, "image_size": 32}
    base = TrainSettings(steps=args.steps, lr=0.02, batch_size=64, momentum=0.9, seed=0)
    runs = {
        "float32, seed 1": profile(arch_kw, data, test, mean, std, basis, TrainSettings(**{**vars(base), "seed": 1})),
    }
    ref = profile(arch_kw, data, test, mean, std, basis, base)
    bf16 = TrainSettings(**{**vars(base), "precision": "bfloat16"})
    runs["bf16 above fp32 first layer"] = profile(arch_kw, data, test, mean, std, basis, bf16)
    saved = firstlayer.train.float32_first_layer
    firstlayer.train.float32_first_layer = rounded_first_layer
    try:
        runs["bf16 everywhere"] = profile(arch_kw, data, test, mean, std, basis, bf16)
    finally:
        firstlayer.train.float32_first_layer = saved
    d = len(ref)
    edges = [0, 5, d // 4, d // 2, 3 * d // 4, d - 5, d]
    print("median energy of W - W0 relative to the float32 run (seed 0), by component band:")
    print(f"{'components':>12s} " + " ".join(f"{name:>28s}" for name in runs))
    for a, b in itertools.pairwise(edges):
        cells = " ".join(f"{np.median(p[a:b] / ref[a:b]):28.4f}" for p in runs.values())
        print(f"{f'{a + 1}-{b}':>12s} {cells}")


if __name__ == "__main__":
    main()
