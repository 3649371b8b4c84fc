# Grids from the config, input functions and wildcard constraints. No rules here.
import sys
from pathlib import Path

# The firstlayer package lives in workflow/. Jobs' scripts find it through the link workflow/scripts/firstlayer
# (Snakemake puts a script's folder on its sys.path), so it needs no install inside a rule's conda env.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from firstlayer.config import (
    ConfigError,
    canonical,
    config_hash,
    expand_grid,
    iter_datasets,
    kernel_sizes,
    parse_seed_key,
    train_jobs,
    validate_config,
)
from firstlayer.patches import shard_bounds

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
    labels="true|random",
    seeds=r"\d+(\+\d+)*",
    k=r"\d+",
    shard=r"\d+",


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
        "results/tables/profile_contrast.parquet",
        "results/figures/profiles.png",
        "results/figures/fit_overlay.png",
        "results/figures/consistency.png",
    ]


def dataset_spec(wildcards):
    return canonical(config["datasets"][wildcards.dataset])


def arch_spec(wildcards):
    return config["architectures"][wildcards.arch]


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
    import pandas as pd

    manifest = checkpoints.prepare_dataset.get(
        dataset=wildcards.dataset
    ).output.manifest
    split = pd.read_parquet(manifest, columns=["split"])["split"]
    shards = shard_bounds(
        int((split == "train").sum()), config["patches"]["shard_size"]
    )
    return [
        f"results/patches/{wildcards.dataset}/k{wildcards.k}/shards/{i}.parquet"
        for i in range(len(shards))
    ]


def patch_shard_mem_mb(wildcards):
    """MiB for a shard job: its uint8 images, four float32 copies of a chunk and the interpreter."""
    side = config["datasets"][wildcards.dataset].get("image_size", 32)
    shard = config["patches"]["shard_size"] * 3 * side * side
    chunk = 4 * 4 * config["patches"]["images_per_chunk"] * 3 * side * side
    return 800 + (shard + chunk) // 2**20


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
            "training": config["training"],
            "data": dataset_spec(wildcards),
        }
    )


def train_runtime(wildcards):
    """Minutes to ask for: a generous CPU estimate from the number of images the job's seeds process."""
    spec = arch_spec(wildcards)
    images = spec["steps"] * spec["batch_size"] * len(parse_seed_key(wildcards.seeds))
    per_second = {"linear": 2000, "small_cnn": 500, "resnet18": 20}[spec["model"]]
    return 10 + int(3 * images / per_second / 60)
