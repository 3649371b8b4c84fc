"""Train one run of the grid and save its first-layer snapshots and metrics."""

import torch

from firstlayer.config import config_hash
from firstlayer.datasets import channel_stats
from firstlayer.io import job_log, load_dataset, write_table
from firstlayer.train import TrainSettings, init_model, log_schedule, snapshots_frame, train

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    s = snakemake.params.settings
    arch = s["architecture"]
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest)
    (x_train, y_train), (x_test, y_test) = dataset.split("train"), dataset.split("test")
    mean, std = channel_stats(x_train)
    settings = TrainSettings(
        steps=arch["steps"],
        lr=arch["lr"],
        batch_size=arch["batch_size"],
        optimizer=arch["optimizer"],
        momentum=arch["momentum"],
        weight_decay=arch["weight_decay"],
        labels=s["labels"],
        seed=s["seed"],
        snapshot_steps=log_schedule(arch["steps"], s["snapshots"]["count"]),
        eval_steps=log_schedule(arch["steps"], arch.get("eval_points", s["training"]["eval_points"])),
        train_eval_size=s["training"]["train_eval_size"],
        eval_batch_size=s["training"]["eval_batch_size"],
        device=s["training"]["device"],
    )
    print(f"run {s['dataset']}/{s['arch']}/{s['labels']}/seed{s['seed']}: {settings}")
    model = init_model(
        arch["model"],
        num_classes=dataset.num_classes,
        kernel_size=arch["kernel_size"],
        width=arch.get("width"),
        image_size=x_train.shape[-1],
        seed=s["seed"],
    )
    result = train(
        model,
        arch["model"],
        (torch.from_numpy(x_train), torch.from_numpy(y_train)),
        (torch.from_numpy(x_test), torch.from_numpy(y_test)),
        mean,
        std,
        settings,
    )
    keys = {
        "dataset": s["dataset"],
        "arch": s["arch"],
        "model": arch["model"],
        "labels": s["labels"],
        "seed": s["seed"],
    }
    digest = config_hash({**s, "data": dataset.manifest["config_hash"].iloc[0]})
    write_table(snapshots_frame(result.snapshots).assign(**keys), snakemake.output.snapshots, digest)
    write_table(result.metrics.assign(**keys), snakemake.output.metrics, digest)
    final = result.metrics[result.metrics.step == settings.steps].set_index("metric")["value"].to_dict()
    print(f"done in {result.seconds:.1f}s ({result.extra['images_per_second']:.0f} images/s): {final}")
