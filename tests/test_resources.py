"""Unit tests for firstlayer.resources: runtime (minutes), memory (MiB) and GPUs of each kind of job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from firstlayer import resources
from firstlayer.config import validate_config

MIB = 2**20


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("cats", "dogs"):
        (tmp_path / "pics" / name).mkdir(parents=True)
    return tmp_path / "pics"


def make_config(folder: Path, device: str = "cpu", **sections) -> dict:
    """Three datasets (embedded, CIFAR, an image folder) and two architectures, validated (defaults filled in)."""
    return validate_config(
        {
            "datasets": {
                "crops": {"source": "embedded", "photos": ["astronaut", "coffee"], "train_per_class": 100},
                "cifar": {"source": "cifar10", "root": "/nowhere", "max_train": 1000},
                "pics": {"source": "folder", "root": str(folder), "image_size": 64},
            },
            "architectures": {
                "lin": {"model": "linear", "lr": 0.1, "steps": 6000, "seeds_per_job": 2},
                "res": {"model": "resnet20", "lr": 0.1, "epochs": 3, "batch_size": 32},
            },
            "grid": [{"datasets": ["crops", "cifar", "pics"], "architectures": ["lin", "res"]}],
            "training": {"device": device},
            **sections,
        }
    )


def test_requested_scales_or_replaces_the_estimate(folder):
    config = make_config(folder, resources={"train": {"runtime_factor": 2.5, "mem_mb": 4321}})
    assert resources.requested(config, "train", "runtime", 10.1) == 26  # 25.25 rounded up
    assert resources.requested(config, "train", "mem_mb", 999) == 4321
    assert resources.requested(config, "patch_shard", "runtime", 0) == 1  # at least 1
    assert resources.requested(config, "patch_shard", "mem_mb", 841.3) == 842


def test_dataset_mb_from_the_config_or_the_prepared_file(folder, tmp_path):
    config = make_config(folder)
    crops = 2 * (100 + 64) * 3 * 32 * 32 / MIB
    assert resources.dataset_mb(config["datasets"]["crops"], "unused") == pytest.approx(crops)
    assert resources.dataset_mb(config["datasets"]["cifar"], "unused") == pytest.approx(11_000 * 3072 / MIB)
    with pytest.raises(FileNotFoundError):  # an image folder before preparation: <TBD> in a dry run
        resources.dataset_mb(config["datasets"]["pics"], tmp_path / "images.npy")
    np.save(tmp_path / "images.npy", np.zeros((100, 3, 64, 64), np.uint8))
    assert resources.dataset_mb(config["datasets"]["pics"], tmp_path / "images.npy") == pytest.approx(1.17, abs=0.01)


def test_prepare_dataset(folder):
    config = make_config(folder, resources={"prepare_dataset": {"mem_factor": 2}})
    crops = 2 * (100 + 64) * 3 * 32 * 32 / MIB
    assert resources.prepare_dataset_mem_mb(config, "crops") == np.ceil(2 * (1500 + 3 * crops))
    assert resources.prepare_dataset_mem_mb(config, "pics") == 16000  # 8 GiB before an image folder is read
    assert resources.prepare_dataset_runtime(config, "crops") == 15
    assert resources.prepare_dataset_runtime(config, "pics") == 120
    config["resources"]["prepare_dataset"]["runtime"] = 7
    assert resources.prepare_dataset_runtime(config, "pics") == 7


def test_patch_shard(folder):
    config = make_config(folder)
    # 10,000 32x32 images and 16 bytes x 256 images of a chunk, + 800 MiB
    assert resources.patch_shard_mem_mb(config, "crops") == np.ceil(800 + (10_000 + 16 * 256) * 3072 / MIB) == 842
    assert resources.patch_shard_runtime(config, "crops", 3) == 6  # 5 + 0.015
    assert resources.patch_shard_mem_mb(config, "pics") == np.ceil(800 + (10_000 + 16 * 256) * 3 * 4096 / MIB)
    # 200,000 64x64 images, 11x11 kernels: 200,000 x 4096 x 121 taps at 10^8 per second = 16.5 min, + 5
    config["patches"]["shard_size"] = 200_000
    assert resources.patch_shard_runtime(config, "pics", 11) == 22
    assert resources.patch_shard_runtime(config, "pics", 3) == 7
    config["resources"]["patch_shard"] = {"runtime_factor": 2.0, "mem_factor": 1.0, "mem_mb": 500}
    assert resources.patch_shard_runtime(config, "pics", 11) == 44
    assert resources.patch_shard_mem_mb(config, "pics") == 500


def write_manifest(path: Path, train: int, test: int) -> Path:
    pd.DataFrame({"split": ["train"] * train + ["test"] * test}).to_parquet(path)
    return path


def test_train_runtime_on_the_cpu_and_on_a_gpu(folder, tmp_path):
    cpu, gpu = make_config(folder, "cpu"), make_config(folder, "auto")
    # 6000 steps x 64 images x 2 seeds at linear's 2000 images/s: 384 s, x 3 = 19.2 min, + 10
    assert resources.train_runtime(cpu, "crops", "lin", "0+1", "unused") == 30
    assert resources.train_runtime(gpu, "crops", "lin", "0+1", "unused") == 11  # 50 times less: 10.4
    gpu["architectures"]["lin"]["steps"] = 600_000  # 38,400 s on the CPU, 768 s on a GPU: x 3 = 38.4 min, + 10
    assert resources.train_runtime(gpu, "crops", "lin", "0+1", "unused") == 49
    # epochs: 3 x 1000 CIFAR images at resnet20's 150 images/s: 20 s x 3 = 1 min, + 10
    assert resources.train_runtime(cpu, "cifar", "res", "0", "unused") == 11
    # an image folder: its training images are read from the manifest, and 64x64 images cost 4 times 32x32
    manifest = tmp_path / "manifest.parquet"
    with pytest.raises(FileNotFoundError, match="dataset not prepared yet"):
        resources.train_runtime(cpu, "pics", "res", "0", manifest)
    write_manifest(manifest, train=3000, test=500)
    # 3 x 3000 x 4 / 150 = 240 s, x 3 = 12 min, + 10
    assert resources.train_runtime(cpu, "pics", "res", "0", manifest) == 22
    cpu["resources"]["train"]["runtime_factor"] = 10
    assert resources.train_runtime(cpu, "pics", "res", "0", manifest) == 220


def test_train_memory_on_the_cpu_and_on_a_gpu(folder, tmp_path):
    cpu, gpu = make_config(folder, "cpu"), make_config(folder, "cuda")
    crops = 2 * (100 + 64) * 3 * 32 * 32 / MIB
    # the dataset twice, and on the CPU the activations of max(2 seeds x 64, 512 // 2) images of linear (0.05 MiB)
    assert resources.train_mem_mb(cpu, "crops", "lin", "0+1", "unused") == np.ceil(1500 + 2 * crops + 0.05 * 256)
    assert resources.train_mem_mb(gpu, "crops", "lin", "0+1", "unused") == np.ceil(3000 + 2 * crops)
    images = tmp_path / "images.npy"
    with pytest.raises(FileNotFoundError):
        resources.train_mem_mb(cpu, "pics", "res", "0", images)
    np.save(images, np.zeros((1000, 3, 64, 64), np.uint8))
    data = images.stat().st_size / MIB
    # resnet20: 1.5 MiB per 32x32 image, 4 times that at 64x64, for 256 images
    assert resources.train_mem_mb(cpu, "pics", "res", "0", images) == np.ceil(1500 + 2 * data + 6.0 * 256)
    cpu["resources"]["train"]["mem_factor"] = 0.5
    assert resources.train_mem_mb(cpu, "pics", "res", "0", images) == np.ceil(0.5 * (1500 + 2 * data + 6.0 * 256))


@pytest.mark.parametrize(("device", "gpus"), [("cpu", 0), ("auto", 1), ("cuda", 1)])
def test_a_training_job_asks_for_a_gpu_only_when_it_can_use_one(folder, device, gpus):
    assert resources.train_gpu(make_config(folder, device)) == gpus
