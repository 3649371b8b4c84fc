"""Train one job of the grid (one seed, or several together); save first-layer snapshots and metrics.

Progress goes to params.resume (seeds that train one after another: one file each, beside it) every
training.checkpoint_minutes and on SIGTERM, SIGUSR1 or SIGINT, after which the job exits with INTERRUPTED_EXIT_CODE;
rerun, it continues from there. The checkpoints are deleted once the outputs exist. checkpoint_minutes and log_every
come from the config, not the job's parameters: they do not change the result (config.non_result_settings)."""

import sys
from pathlib import Path

import torch

from firstlayer.config import non_result_settings
from firstlayer.datasets import normalisation_values
from firstlayer.io import console_log, job_log, load_dataset, read_table, stamp, write_table
from firstlayer.resume import INTERRUPTED_EXIT_CODE, TrainingInterrupted, checkpoint_files, stop_on_signals
from firstlayer.runs import job_tables, run_job

job, resume = snakemake.params.settings, Path(snakemake.params.resume)
# how often to save and report (checkpoint_minutes, log_every) is read here, from the config: not a job parameter
progress = {k: snakemake.config["training"][k] for k in non_result_settings()["training"]}
interrupted = False
with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, name=job["dataset"])
    normalisation_table = read_table(snakemake.input.normalisation, dataset=job["dataset"])
    normalisation = normalisation_values(normalisation_table)
    log = console_log(f"{job['dataset']}/{job['arch']}/{job['labels']}/seed{'+'.join(map(str, job['seeds']))}")
    try:
        with stop_on_signals() as stop:
            results = run_job(job, dataset, normalisation, log=log, checkpoint=resume, stop=stop, **progress)
    except TrainingInterrupted as error:
        log(f"{error}; exiting with status {INTERRUPTED_EXIT_CODE}, rerun the job to continue")
        interrupted = True
    else:
        # the settings hash of the settings alone (they hold the dataset's spec): energy_profile recomputes it
        inputs = [dataset.manifest, normalisation_table]
        mark = stamp(snakemake.rule, snakemake.params.code, job, inputs, chain_settings=False)
        snapshots, metrics = job_tables(job, results)
        write_table(snapshots, snakemake.output.snapshots, mark)
        write_table(metrics, snakemake.output.metrics, mark)
        for path in checkpoint_files(resume, job["seeds"]):
            path.unlink(missing_ok=True)
        for seed, r in zip(job["seeds"], results, strict=True):
            log(f"seed {seed}: {r.metrics[r.metrics.step == r.metrics.step.max()].set_index('metric').value.to_dict()}")
        log(f"done in {results[0].seconds:.1f}s ({results[0].extra['images_per_second']:.0f} images/s, all seeds)")
if interrupted:
    sys.exit(INTERRUPTED_EXIT_CODE)
