"""What each job asks a cluster scheduler for: runtime (minutes), memory (MiB) and GPUs, estimated from the job.

The estimates scale with the job (images, kernel size, model, seeds); config["resources"][kind] scales them
(`runtime_factor`, `mem_factor`) or replaces them (`runtime`, `mem_mb`). An image folder's size is known only once
it is prepared: until then the estimates that need it raise FileNotFoundError, which Snakemake shows as <TBD> and
evaluates again when the job is about to run. Imports no torch (the workflow calls these while it is parsed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from firstlayer.config import config_images, image_side, parse_seed_key
from firstlayer.modelspec import model_spec

#: How many times faster than 2 CPU cores a GPU trains these networks, at least (for the runtime request).
TRAIN_GPU_SPEEDUP = 50


def requested(config: Mapping[str, Any], kind: str, resource: str, estimate: float) -> int:
    """config["resources"][kind][resource] when set, else the estimate times the kind's factor (rounded up)."""
    settings = config["resources"][kind]
    if resource in settings:
        return settings[resource]
    factor = settings["runtime_factor" if resource == "runtime" else "mem_factor"]
    return max(1, math.ceil(estimate * factor))


def dataset_mb(spec: Mapping[str, Any], images: str | Path) -> float:
    """MiB of a dataset's uint8 images: from its config entry, else (an image folder) from the prepared `images`
    file, which raises FileNotFoundError until it exists."""
    known = config_images(spec)
    if known is None:
        return os.path.getsize(images) / 2**20
    train, test, side = known
    return (train + test) * 3 * side**2 / 2**20


def train_images(manifest: str | Path) -> int:
    """Training images of a prepared dataset; FileNotFoundError naming the manifest until it exists."""
    import pandas as pd

    if not Path(manifest).exists():
        raise FileNotFoundError(2, "dataset not prepared yet", str(manifest))
    return int((pd.read_parquet(manifest, columns=["split"])["split"] == "train").sum())


def prepare_dataset_mem_mb(config: Mapping[str, Any], dataset: str) -> int:
    """MiB: the interpreter and three copies of the uint8 images (read, stacked, saved); an image folder, whose
    size is known once read, gets 8 GiB."""
    spec = config["datasets"][dataset]
    estimate = 8000 if config_images(spec) is None else 1500 + 3 * dataset_mb(spec, "")
    return requested(config, "prepare_dataset", "mem_mb", estimate)


def prepare_dataset_runtime(config: Mapping[str, Any], dataset: str) -> int:
    """Minutes: embedded crops and CIFAR files take seconds; an image folder is decoded image by image."""
    folder = config["datasets"][dataset]["source"] == "folder"
    return requested(config, "prepare_dataset", "runtime", 120 if folder else 15)


def patch_shard_mem_mb(config: Mapping[str, Any], dataset: str) -> int:
    """MiB for a shard job: its uint8 images, four float32 copies of a chunk and the interpreter."""
    pixels = 3 * image_side(config["datasets"][dataset]) ** 2
    shard = config["patches"]["shard_size"] * pixels
    chunk = 4 * 4 * config["patches"]["images_per_chunk"] * pixels
    return requested(config, "patch_shard", "mem_mb", 800 + (shard + chunk) / 2**20)


def patch_shard_runtime(config: Mapping[str, Any], dataset: str, kernel_size: int | str) -> int:
    """Minutes: 5 to start, plus the shard's products of k x k windows at every pixel at 10^8 pixel-taps per second
    (6 to 15 times below what 2 cores reach: benchmarks/README.md, Patch statistics)."""
    taps = config["patches"]["shard_size"] * image_side(config["datasets"][dataset]) ** 2 * int(kernel_size) ** 2
    return requested(config, "patch_shard", "runtime", 5 + taps / 1e8 / 60)


def train_gpu(config: Mapping[str, Any]) -> int:
    """GPUs a training job asks for: none when `training.device` is cpu, else one (`auto` uses it when it is there)."""
    return 0 if config["training"]["device"] == "cpu" else 1


def train_runtime(config: Mapping[str, Any], dataset: str, arch: str, seeds: str, manifest: str | Path) -> int:
    """Minutes: 10 to start, plus three times what the job's seeds take to process their training images at the
    model's conservative CPU rate (``ModelSpec.cpu_images_per_second``), scaled by image area; on the GPU the job
    asks for, TRAIN_GPU_SPEEDUP times less. `seeds` is the job's seed key ('0', '0+1')."""
    entry, spec = config["architectures"][arch], config["datasets"][dataset]
    if "steps" in entry:
        per_seed = entry["steps"] * entry["batch_size"]
    elif (known := config_images(spec)) is not None:
        per_seed = entry["epochs"] * known[0]
    else:  # epochs of an image folder: one pass is every training image
        per_seed = entry["epochs"] * train_images(manifest)
    images = per_seed * len(parse_seed_key(seeds)) * (image_side(spec) / 32) ** 2
    seconds = images / model_spec(entry["model"]).cpu_images_per_second
    if train_gpu(config):
        seconds /= TRAIN_GPU_SPEEDUP
    return requested(config, "train", "runtime", 10 + 3 * seconds / 60)


def train_mem_mb(config: Mapping[str, Any], dataset: str, arch: str, seeds: str, images: str | Path) -> int:
    """MiB of host memory: the interpreter with torch (and CUDA), the uint8 dataset twice (array and tensor), and,
    when training runs on the CPU, the activations of the job's batches (``ModelSpec.activation_mb`` per image)."""
    entry, spec = config["architectures"][arch], config["datasets"][dataset]
    data = dataset_mb(spec, images)
    if train_gpu(config):
        return requested(config, "train", "mem_mb", 3000 + 2 * data)
    per_image = model_spec(entry["model"]).activation_mb * (image_side(spec) / 32) ** 2
    batch = max(len(parse_seed_key(seeds)) * entry["batch_size"], config["training"]["eval_batch_size"] // 2)
    return requested(config, "train", "mem_mb", 1500 + 2 * data + per_image * batch)
