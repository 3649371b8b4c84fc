"""The workflow's training jobs: one job (a run family's seeds, ``seeds_per_job`` of them) trained on its prepared
dataset, and its results as the tidy snapshots and metrics tables the train rule writes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from firstlayer.datasets import PreparedDataset
from firstlayer.resume import StopFlag
from firstlayer.settings import TrainSettings
from firstlayer.train import TrainingDiverged, TrainResult, init_model, train, train_seeds


def run_job(
    job: Mapping[str, Any],
    dataset: PreparedDataset,
    normalisation: tuple[np.ndarray, np.ndarray],
    *,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    checkpoint_minutes: float = 10.0,
    log_every: int | None = None,
    stop: StopFlag | None = None,
) -> list[TrainResult]:
    """Train one job of the workflow (`job`: the rule's validated ``settings``) on a prepared dataset: one result
    per seed of ``job["seeds"]``, its inputs normalised by the dataset's (C,) channel mean and std, the
    ``datasets.channel_stats`` of its training images that the patch PCA uses too. `checkpoint_minutes` and
    `log_every` are the config's non-result settings: the job's ``settings`` do not hold them."""
    (x_train, y_train), (x_test, y_test) = dataset.split("train"), dataset.split("test")
    mean, std = normalisation
    settings = TrainSettings.from_config(job, x_train.shape[0], log_every)
    arch, seeds = job["architecture"], job["seeds"]
    epochs = f" ({arch['epochs']} epochs of {x_train.shape[0]} images)" if "epochs" in arch else ""
    log(f"job {job['dataset']}/{job['arch']}/{job['labels']}, seeds {seeds}: {settings.steps} steps{epochs}")
    kwargs = {"num_classes": dataset.num_classes, "kernel_size": arch["kernel_size"], "width": arch.get("width"),
              "image_size": x_train.shape[-1], "init_scale": arch["init_scale"],
              "first_layer_path": arch.get("first_layer")}  # fmt: skip
    data = (torch.from_numpy(x_train), torch.from_numpy(y_train)), (torch.from_numpy(x_test), torch.from_numpy(y_test))
    resume = {"log": log, "checkpoint": checkpoint, "checkpoint_minutes": checkpoint_minutes, "stop": stop}
    try:
        if len(seeds) == 1:
            model = init_model(arch["model"], seed=seeds[0], **kwargs)
            return [train(model, arch["model"], *data, mean, std, settings, **resume)]
        return train_seeds(arch["model"], kwargs, *data, mean, std, settings, seeds, **resume)
    except TrainingDiverged as error:
        raise TrainingDiverged(f"{job['dataset']}/{job['arch']}/{job['labels']}: {error}") from None


def snapshots_frame(snapshots: dict[int, torch.Tensor]) -> pd.DataFrame:
    """{step: (K, c, k, k)} -> tidy rows (step, filter, position, weight); position follows weight.flatten(1)."""
    frames = []
    for step, w in sorted(snapshots.items()):
        flat = w.flatten(1).numpy()
        k, d = flat.shape
        frames.append(
            pd.DataFrame(
                {
                    "step": step,
                    "filter": np.repeat(np.arange(k), d),
                    "position": np.tile(np.arange(d), k),
                    "weight": flat.ravel().astype(np.float32),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def job_tables(job: Mapping[str, Any], results: Sequence[TrainResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A job's results as its tidy snapshots and metrics tables, with the run keys (and each run's precision and
    effective batch size in the metrics)."""
    keys = {"dataset": job["dataset"], "arch": job["arch"], "model": job["architecture"]["model"],
            "labels": job["labels"]}  # fmt: skip
    runs = list(zip(job["seeds"], results, strict=True))
    snapshots = [snapshots_frame(r.snapshots).assign(**keys, seed=seed) for seed, r in runs]
    metrics = [r.metrics.assign(**keys, seed=seed, precision=r.precision, batch_size=int(r.extra["batch_size"]))
               for seed, r in runs]  # fmt: skip
    return pd.concat(snapshots, ignore_index=True), pd.concat(metrics, ignore_index=True)
