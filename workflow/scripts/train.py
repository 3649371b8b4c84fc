"""Train one job of the grid (one seed, or several together); save first-layer snapshots and metrics.

Progress goes to params.resume (seeds that train one after another: one file each, beside it) every
training.checkpoint_minutes and on SIGTERM/SIGUSR1, after which the job exits with INTERRUPTED_EXIT_CODE; rerun, it
continues from there. The checkpoints are deleted once the outputs exist."""

import sys
from pathlib import Path

import pandas as pd
import torch

from firstlayer.config import config_hash
from firstlayer.datasets import normalisation_values
from firstlayer.io import console_log, job_log, load_dataset, write_table
from firstlayer.resume import INTERRUPTED_EXIT_CODE, TrainingInterrupted, checkpoint_files, stop_on_signals
from firstlayer.runs import job_tables, run_job

job, resume = snakemake.params.settings, Path(snakemake.params.resume)
minutes = snakemake.config["training"]["checkpoint_minutes"]
interrupted = False
with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest)
    normalisation = normalisation_values(pd.read_parquet(snakemake.input.normalisation))
    log = console_log(f"{job['dataset']}/{job['arch']}/{job['labels']}/seed{'+'.join(map(str, job['seeds']))}")
    try:
        with stop_on_signals() as stop:
            results = run_job(
                job, dataset, normalisation, log=log, checkpoint=resume, checkpoint_minutes=minutes, stop=stop
            )
    except TrainingInterrupted as error:
        log(f"{error}; exiting with status {INTERRUPTED_EXIT_CODE}, rerun the job to continue")
        interrupted = True
    else:
        digest = config_hash({**job, "data": dataset.manifest["config_hash"].iloc[0]})
        snapshots, metrics = job_tables(job, results)
        write_table(snapshots, snakemake.output.snapshots, digest)
        write_table(metrics, snakemake.output.metrics, digest)
        for path in checkpoint_files(resume, job["seeds"]):
            path.unlink(missing_ok=True)
        for seed, r in zip(job["seeds"], results, strict=True):
            log(f"seed {seed}: {r.metrics[r.metrics.step == r.metrics.step.max()].set_index('metric').value.to_dict()}")
        log(f"done in {results[0].seconds:.1f}s ({results[0].extra['images_per_second']:.0f} images/s, all seeds)")
if interrupted:
    sys.exit(INTERRUPTED_EXIT_CODE)
