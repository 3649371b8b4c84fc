# Grids from the config, input functions and wildcard constraints. No rules here.
import sys
from pathlib import Path

from firstlayer.config import (
    ConfigError,
    canonical,
    config_hash,
    expand_grid,
    iter_datasets,
    kernel_sizes,
    parse_seed_key,
    shard_bounds,
    train_jobs,
    validate_config,
)
from firstlayer import resources as job_resources
from firstlayer.modelspec import source_file

try:
    _validated = validate_config(config)
except ConfigError as error:
    sys.exit(f"firstlayer: {error}")
config.clear()
config.update(_validated)

RUNS = expand_grid(config)
# Training jobs: a run family's seeds, one per job or `seeds_per_job` together ('seed0', 'seed0+1' in paths).
JOBS = train_jobs(config)
DATASETS = list(iter_datasets(config))
JOB_PATTERN = "{dataset}/{arch}/{labels}/seed{seeds}"


wildcard_constraints:
    dataset="[A-Za-z][A-Za-z0-9_]*",
    arch="[A-Za-z][A-Za-z0-9_]*",
    labels="true|random|frozen",
    seeds=r"\d+(\+\d+)*",
    k=r"\d+",
    shard=r"\d+",


# The filter figure: one training job per architecture, its first with true labels, else random, else frozen.
FILTER_JOBS = [
    min(
        (job for job in JOBS if job.arch == arch),
        key=lambda job: ("true", "random", "frozen").index(job.labels),
    )
    for arch in dict.fromkeys(job.arch for job in JOBS)
]


def table(name):
    """The path of a collected table."""
    return f"results/tables/{name}.parquet"


def job_paths(pattern):
    """`pattern` filled in for every training job of the grid."""
    return [
        pattern.format(
            dataset=job.dataset, arch=job.arch, labels=job.labels, seeds=job.seed_key
        )
        for job in JOBS
    ]


def pca_paths():
    return [
        f"results/patches/{dataset}/k{k}/pca.parquet"
        for dataset in DATASETS
        for k in kernel_sizes(config, dataset)
    ]


def all_outputs(wildcards):
    return [
        *pca_paths(),
        "results/tables/energy.parquet",
        "results/tables/fits.parquet",
        "results/tables/metrics.parquet",
        "results/tables/consistency.parquet",
        "results/tables/consistency_summary.parquet",
        "results/tables/matched_tau.parquet",
        "results/tables/matched_tau_summary.parquet",
        "results/tables/tau_distance.parquet",
        "results/tables/profile_contrast.parquet",
        "results/tables/whitening.parquet",
        "results/tables/accuracy.parquet",
        "results/tables/linear_check.parquet",
        "results/tables/label_information.parquet",
        "results/tables/replication.md",
        # every figure of FIGURES (workflow/rules/figures.smk)
        *expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=["png", "svg"]),
        "results/report/replication.html",
        "results/report/configuration.html",
        *pretrained_paths(),
    ]


def dataset_spec(wildcards):
    return canonical(config["datasets"][wildcards.dataset])


def arch_spec(wildcards):
    return config["architectures"][wildcards.arch]


def model_file(wildcards):
    """A user model's .py file (editing it re-trains the architecture); none for other models."""
    path = source_file(arch_spec(wildcards)["model"])
    return [str(path)] if path is not None else []


def arch_kernel_size(wildcards):
    return arch_spec(wildcards)["kernel_size"]


def fit_settings(wildcards):
    return canonical(config["fit"])


def run_pca(wildcards):
    """The PCA matching a run: its dataset, at its architecture's kernel size."""
    return f"results/patches/{wildcards.dataset}/k{arch_kernel_size(wildcards)}/pca.parquet"


def patch_shards(wildcards):
    """The shard tables of a dataset's training images at one kernel size (their number is known once the
    dataset is prepared: prepare_dataset is a checkpoint)."""
    manifest = checkpoints.prepare_dataset.get(
        dataset=wildcards.dataset
    ).output.manifest
    shards = shard_bounds(
        job_resources.train_images(manifest), config["patches"]["shard_size"]
    )
    return [
        f"results/patches/{wildcards.dataset}/k{wildcards.k}/shards/{i}.parquet"
        for i in range(len(shards))
    ]


# Resource requests (runtime in minutes, mem_mb in MiB, gpu): estimated per job by firstlayer.resources, scaled or
# replaced per kind of job by config["resources"]. A local run ignores them unless `snakemake --resources` sets limits.
def prepare_dataset_mem_mb(wildcards):
    return job_resources.prepare_dataset_mem_mb(config, wildcards.dataset)


def prepare_dataset_runtime(wildcards):
    return job_resources.prepare_dataset_runtime(config, wildcards.dataset)


def patch_shard_mem_mb(wildcards):
    return job_resources.patch_shard_mem_mb(config, wildcards.dataset)


def patch_shard_runtime(wildcards):
    return job_resources.patch_shard_runtime(
        config, wildcards.dataset, int(wildcards.k)
    )


def train_runtime(wildcards, input):
    return job_resources.train_runtime(
        config, wildcards.dataset, wildcards.arch, wildcards.seeds, input.manifest
    )


def train_mem_mb(wildcards, input):
    return job_resources.train_mem_mb(
        config, wildcards.dataset, wildcards.arch, wildcards.seeds, input.images
    )


def train_gpu(wildcards):
    """One GPU unless training.device is cpu: a CPU-only cluster gets no GPU request."""
    return job_resources.train_gpu(config)


def train_settings(wildcards):
    """Everything that determines a training run's result (also hashed as its provenance)."""
    return canonical(
        {
            "dataset": wildcards.dataset,
            "arch": wildcards.arch,
            "labels": wildcards.labels,
            "seeds": list(parse_seed_key(wildcards.seeds)),
            "architecture": arch_spec(wildcards),
            "snapshots": config["snapshots"],
            # checkpoint_minutes only says how often progress is saved: the result is the same
            "training": {
                k: v for k, v in config["training"].items() if k != "checkpoint_minutes"
            },
            "data": dataset_spec(wildcards),
        }
    )


# Pretrained torchvision models (config `pretrained`): one profile table per model, on one dataset's patches.
PRETRAINED = {m["name"]: m for m in config["pretrained"]["models"]}


def pretrained_paths():
    """The pretrained models' profile tables, their collected table, and their dataset's PCA at their kernel
    sizes (also when no network of the grid trains on that dataset); nothing when none is configured.
    """
    if not PRETRAINED:
        return []
    dataset = config["pretrained"]["dataset"]
    pcas = [
        f"results/patches/{dataset}/k{k}/pca.parquet"
        for k in kernel_sizes(config, dataset)
    ]
    return [
        *[f"results/pretrained/{name}/energy.parquet" for name in PRETRAINED],
        "results/tables/pretrained.parquet",
        *[path for path in pcas if path not in pca_paths()],
    ]


def pretrained_checkpoint_path(wildcards):
    """Where the checkpoint of a pretrained model is looked for (configured path, else torchvision's hub cache)."""
    from firstlayer.pretrained import checkpoint_path

    entry = PRETRAINED[wildcards.name]
    return str(checkpoint_path(entry["name"], entry["weights"], entry.get("path")))


def pretrained_checkpoint(wildcards):
    """The checkpoint as an input when it exists (a checkpoint that appears later re-runs the job); none when it is
    missing, so that the job still runs and records the missing file."""
    path = pretrained_checkpoint_path(wildcards)
    return [path] if Path(path).is_file() else []


def pretrained_shards(wildcards):
    """The patch-statistics shards of the pretrained dataset at the model's kernel size."""
    from types import SimpleNamespace

    from firstlayer.pretrained import first_layer_weight

    k = first_layer_weight(wildcards.name).kernel_size
    return patch_shards(SimpleNamespace(dataset=config["pretrained"]["dataset"], k=k))


def pretrained_settings(wildcards):
    """What determines a pretrained profile: the model entry, its dataset, where its checkpoint is."""
    path = pretrained_checkpoint_path(wildcards)
    return canonical(
        {
            **PRETRAINED[wildcards.name],
            "dataset": config["pretrained"]["dataset"],
            "checkpoint": path,
            "found": Path(path).is_file(),
        }
    )
