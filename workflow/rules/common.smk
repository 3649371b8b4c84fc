# Grids from the config, input functions and wildcard constraints. No rules here.
import math
import os
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
from firstlayer.datasets import EMBEDDED_PHOTOS
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
    labels="true|random|frozen",
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
        "results/tables/whitening.parquet",
        "results/tables/accuracy.parquet",
        "results/tables/linear_check.parquet",
        "results/tables/label_information.parquet",
        "results/tables/replication.md",
        *expand(
            "results/figures/{figure}.{ext}",
            figure=[
                "profiles",
                "fit_overlay",
                "consistency",
                "filters",
                "evolution",
                "whitening",
                "accuracy",
                "linear_check",
            ],
            ext=["png", "svg"],
        ),
        "results/report/replication.html",
        "results/report/configuration.html",
        *pretrained_paths(),
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


# Resource requests (runtime in minutes, mem_mb in MiB) scale with each job; config["resources"] scales or
# replaces them per kind of job. A local run ignores them unless `snakemake --resources` sets limits.
def requested(kind, resource, estimate):
    """config["resources"][kind][resource] when set, else the estimate times the kind's factor (rounded up)."""
    settings = config["resources"][kind]
    if resource in settings:
        return settings[resource]
    factor = settings["runtime_factor" if resource == "runtime" else "mem_factor"]
    return max(1, math.ceil(estimate * factor))


def config_images(dataset):
    """(training images, test images, image side) as a dataset's config fixes them; None for an image folder."""
    spec = config["datasets"][dataset]
    side = spec.get("image_size", 32)
    if spec["source"] == "embedded":
        photos = len(spec.get("photos") or EMBEDDED_PHOTOS)
        classes = photos if spec["labels"] == "photo" else 4
        return classes * spec["train_per_class"], classes * spec["test_per_class"], side
    if spec["source"] in ("cifar10", "cifar100"):
        return spec.get("max_train") or 50_000, spec.get("max_test") or 10_000, side
    return None


def dataset_mb(dataset, images_file):
    """MiB of a dataset's uint8 images: from its config, else (an image folder) from the prepared file (which
    raises FileNotFoundError, so <TBD> in a dry run, until it exists)."""
    known = config_images(dataset)
    if known is None:
        return os.path.getsize(images_file) / 2**20
    train, test, side = known
    return (train + test) * 3 * side**2 / 2**20


def prepare_dataset_mem_mb(wildcards):
    """MiB: the interpreter and three copies of the uint8 images (read, stacked, saved); an image folder, whose
    size is known once read, gets 8 GiB."""
    if config_images(wildcards.dataset) is None:
        return requested("prepare_dataset", "mem_mb", 8000)
    return requested(
        "prepare_dataset", "mem_mb", 1500 + 3 * dataset_mb(wildcards.dataset, None)
    )


def prepare_dataset_runtime(wildcards):
    """Minutes: embedded crops and CIFAR files take seconds; an image folder is decoded image by image."""
    folder = config["datasets"][wildcards.dataset]["source"] == "folder"
    return requested("prepare_dataset", "runtime", 120 if folder else 15)


def patch_shard_mem_mb(wildcards):
    """MiB for a shard job: its uint8 images, four float32 copies of a chunk and the interpreter."""
    side = config["datasets"][wildcards.dataset].get("image_size", 32)
    shard = config["patches"]["shard_size"] * 3 * side * side
    chunk = 4 * 4 * config["patches"]["images_per_chunk"] * 3 * side * side
    return requested("patch_shard", "mem_mb", 800 + (shard + chunk) / 2**20)


def patch_shard_runtime(wildcards):
    """Minutes: 5 to start, plus the shard's products of k x k windows at every pixel at 10^8 pixel-taps per
    second (6 to 15 times below what 2 cores reach, README: Method notes)."""
    side = config["datasets"][wildcards.dataset].get("image_size", 32)
    taps = config["patches"]["shard_size"] * side**2 * int(wildcards.k) ** 2
    return requested("patch_shard", "runtime", 5 + taps / 1e8 / 60)


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


def train_images(manifest):
    """Training images of a prepared dataset. Raises FileNotFoundError naming the manifest until it exists, so
    that Snakemake evaluates a resource using it again when the job is about to run."""
    import pandas as pd

    if not Path(manifest).exists():
        raise FileNotFoundError(2, "dataset not prepared yet", manifest)
    return int((pd.read_parquet(manifest, columns=["split"])["split"] == "train").sum())


def train_runtime(wildcards, input):
    """Minutes: 10 to start, plus three times the time the job's seeds take to process their training images at
    a conservative rate for the model on 2 CPU cores, at its image size; on the GPU the job asks for (unless
    training.device is cpu) TRAIN_GPU_SPEEDUP times less."""
    spec = arch_spec(wildcards)
    if "steps" in spec:
        per_seed = spec["steps"] * spec["batch_size"]
    elif (known := config_images(wildcards.dataset)) is not None:
        per_seed = spec["epochs"] * known[0]
    else:  # epochs of an image folder: one pass is every training image
        per_seed = spec["epochs"] * train_images(input.manifest)
    images = per_seed * len(parse_seed_key(wildcards.seeds))
    per_second = {
        "linear": 2000,
        "small_cnn": 500,
        "resnet18": 20,
        "resnet20": 150,
        "vgg11_bn": 60,
        "vit_tiny": 60,
    }[spec["model"]]
    side = config["datasets"][wildcards.dataset].get("image_size", 32)
    seconds = images * (side / 32) ** 2 / per_second
    if config["training"]["device"] != "cpu":
        seconds /= TRAIN_GPU_SPEEDUP
    return requested("train", "runtime", 10 + 3 * seconds / 60)


#: How many times faster than 2 CPU cores a GPU trains these networks, at least (for the runtime request).
TRAIN_GPU_SPEEDUP = 50
#: MiB of float32 activations per 32x32 training image (forward and backward), for training on a CPU.
TRAIN_ACTIVATION_MB = {
    "linear": 0.05,
    "small_cnn": 0.5,
    "resnet20": 1.5,
    "vgg11_bn": 4.0,
}


def train_mem_mb(wildcards, input):
    """MiB of host memory: the interpreter with torch (and CUDA), the uint8 dataset twice (array and tensor), and,
    when training runs on the CPU, the activations of the job's batches."""
    spec = arch_spec(wildcards)
    data = dataset_mb(wildcards.dataset, input.images)
    if config["training"]["device"] != "cpu":
        return requested("train", "mem_mb", 3000 + 2 * data)
    side = config["datasets"][wildcards.dataset].get("image_size", 32)
    per_image = TRAIN_ACTIVATION_MB.get(spec["model"], 8.0) * (side / 32) ** 2
    batch = max(
        len(parse_seed_key(wildcards.seeds)) * spec["batch_size"],
        config["training"]["eval_batch_size"] // 2,
    )
    return requested("train", "mem_mb", 1500 + 2 * data + per_image * batch)


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
