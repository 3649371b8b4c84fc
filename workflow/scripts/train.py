"""Train one job of the grid (one seed, or several seeds together) and save first-layer snapshots and metrics.

Resumable: progress goes to params.resume (beside the outputs, not a declared output, so a failed job keeps it)
every training.checkpoint_minutes and on SIGTERM/SIGUSR1, after which the job exits with INTERRUPTED_EXIT_CODE;
rerun, it continues from there. The checkpoint is deleted once the outputs are written."""

import sys
from pathlib import Path

import pandas as pd
import torch

from firstlayer.config import config_hash
from firstlayer.datasets import channel_stats
from firstlayer.io import job_log, load_dataset, write_table
from firstlayer.train import (
    INTERRUPTED_EXIT_CODE,
    TrainingInterrupted,
    TrainSettings,
    init_model,
    log_schedule,
    resolve_steps,
    snapshots_frame,
    stop_on_signals,
    train,
    train_seeds,
)

interrupted = False
with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    s = snakemake.params.settings
    arch, seeds = s["architecture"], s["seeds"]
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest)
    (x_train, y_train), (x_test, y_test) = dataset.split("train"), dataset.split("test")
    mean, std = channel_stats(x_train)
    steps = resolve_steps(arch.get("steps"), arch.get("epochs"), x_train.shape[0], arch["batch_size"])
    if "epochs" in arch:
        print(
            f"steps: {steps} = {arch['epochs']} epochs of {x_train.shape[0]} training images in batches of "
            f"{arch['batch_size']} (architecture key 'epochs')"
        )
    else:
        print(f"steps: {steps} (architecture key 'steps')")
    settings = TrainSettings(
        steps=steps,
        lr=arch["lr"],
        batch_size=arch["batch_size"],
        optimizer=arch["optimizer"],
        momentum=arch["momentum"],
        weight_decay=arch["weight_decay"],
        labels=s["labels"],
        seed=seeds[0],
        snapshot_steps=log_schedule(steps, s["snapshots"]["count"]),
        eval_steps=log_schedule(steps, arch.get("eval_points", s["training"]["eval_points"])),
        train_eval_size=s["training"]["train_eval_size"],
        eval_batch_size=s["training"]["eval_batch_size"],
        device=s["training"]["device"],
        compile=s["training"]["compile"],
        precision=s["training"]["precision"],
        augment=arch["augment"],
    )
    print(f"job {s['dataset']}/{s['arch']}/{s['labels']}, seeds {seeds}: {settings}")
    model_kwargs = {
        "num_classes": dataset.num_classes,
        "kernel_size": arch["kernel_size"],
        "width": arch.get("width"),
        "image_size": x_train.shape[-1],
        "init_scale": arch["init_scale"],
    }
    data = (torch.from_numpy(x_train), torch.from_numpy(y_train)), (torch.from_numpy(x_test), torch.from_numpy(y_test))
    # not part of the hashed settings: how often progress is saved does not change the result
    resume = {
        "checkpoint": Path(snakemake.params.resume),
        "checkpoint_minutes": snakemake.config["training"]["checkpoint_minutes"],
    }
    try:
        with stop_on_signals() as stop:
            if len(seeds) == 1:
                model = init_model(arch["model"], seed=seeds[0], **model_kwargs)
                results = [train(model, arch["model"], *data, mean, std, settings, stop=stop, **resume)]
            else:
                results = train_seeds(
                    arch["model"], model_kwargs, *data, mean, std, settings, seeds, stop=stop, **resume
                )
    except TrainingInterrupted as error:
        print(f"{error}; exiting with status {INTERRUPTED_EXIT_CODE}, rerun the job to continue")
        interrupted = True
    else:
        digest = config_hash({**s, "data": dataset.manifest["config_hash"].iloc[0]})
        keys = {"dataset": s["dataset"], "arch": s["arch"], "model": arch["model"], "labels": s["labels"]}
        runs = list(zip(seeds, results, strict=True))
        snapshots = [snapshots_frame(r.snapshots).assign(**keys, seed=seed) for seed, r in runs]
        metrics = [r.metrics.assign(**keys, seed=seed, precision=r.precision) for seed, r in runs]
        write_table(pd.concat(snapshots, ignore_index=True), snakemake.output.snapshots, digest)
        write_table(pd.concat(metrics, ignore_index=True), snakemake.output.metrics, digest)
        resume["checkpoint"].unlink(missing_ok=True)
        for seed, r in runs:
            final = r.metrics[r.metrics.step == settings.steps].set_index("metric")["value"].to_dict()
            print(f"seed {seed}: {final}")
        print(f"done in {results[0].seconds:.1f}s ({results[0].extra['images_per_second']:.0f} images/s, all seeds)")
if interrupted:
    sys.exit(INTERRUPTED_EXIT_CODE)
