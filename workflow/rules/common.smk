# Grids from the config, result paths, input functions (a section per stage: Snakemake's linter keeps functions
# out of rule files) and wildcard constraints. No rules here.
import sys
from pathlib import Path

from firstlayer.codehash import canonical, code_hash
from firstlayer.config import (
    architecture_entries,
    ConfigError,
    iter_datasets,
    kernel_sizes,
    parse_seed_key,
    result_settings,
    train_jobs,
    validate_config,
)
from firstlayer.datasets import shard_bounds
from firstlayer import resources as job_resources
from firstlayer.modelspec import source_file

try:
    _validated = validate_config(
        config, model_checks=".snakemake/firstlayer/model_checks"
    )
except ConfigError as error:
    sys.exit(f"firstlayer: {error}")
config.clear()
config.update(_validated)

# Training jobs: a run family's seeds, one per job or `seeds_per_job` together ('seed0', 'seed0+1' in paths).
JOBS = train_jobs(config)
DATASETS = list(iter_datasets(config))
JOB_PATTERN = "{dataset}/{arch}/{labels}/seed{seeds}"

# Where results live: every rule and input function builds its paths from these.
DATA = "results/data/{dataset}"
PATCHES = "results/patches/{dataset}/k{k}"
RUN = f"results/train/{JOB_PATTERN}"


wildcard_constraints:
    dataset="[A-Za-z][A-Za-z0-9_]*",
    arch="[A-Za-z][A-Za-z0-9_]*",
    labels="true|random|frozen",
    seeds=r"\d+(\+\d+)*",
    k=r"\d+",
    shard=r"\d+",


def table(name):
    """The path of a collected table."""
    return f"results/tables/{name}.parquet"


def job_file(job, name):
    """The file `name` of one training job's run folder."""
    return f"{RUN}/{name}".format(
        dataset=job.dataset, arch=job.arch, labels=job.labels, seeds=job.seed_key
    )


def job_paths(pattern):
    """`pattern` filled in for every training job of the grid."""
    return [
        pattern.format(
            dataset=job.dataset, arch=job.arch, labels=job.labels, seeds=job.seed_key
        )
        for job in JOBS
    ]


def pca_path(dataset, k):
    return f"{PATCHES}/pca.parquet".format(dataset=dataset, k=k)


def pca_paths():
    return [pca_path(d, k) for d in DATASETS for k in kernel_sizes(config, d)]


def all_outputs(wildcards):
    """The final products: the replication table, every figure, the report pages, the tables no figure draws, and
    the pretrained models' status table and PCAs (workflow/rules/pretrained.smk)."""
    return [
        "results/tables/replication.md",
        *expand("results/figures/{figure}.{ext}", figure=FIGURES, ext=["png", "svg"]),
        "results/report/replication.html",
        "results/report/configuration.html",
        *map(
            table,
            [
                "profile_contrast",
                "label_information",
                "label_information_gaussian",
                "label_information_gaussian_summary",
                "residuals",
                "residual_summary",
            ],
        ),
        *expand("results/figures/residuals.{ext}", ext=["png", "svg"]),
        *pretrained_paths(),
    ]


def code(script):
    """The code hash of a workflow script and the firstlayer modules it imports (firstlayer.codehash), a param of
    the script's rules: editing that code reruns their jobs, editing other modules does not.
    """
    return code_hash(f"{PACKAGE_ROOT}/scripts/{script}.py")


def architectures():
    """Every architecture's entry with the schema's defaults: what two architectures differ in names their relation."""
    return architecture_entries(config)


def dataset_spec(wildcards):
    return canonical(config["datasets"][wildcards.dataset])


def arch_spec(wildcards):
    return config["architectures"][wildcards.arch]


def run_pca(wildcards):
    """The PCA matching a run: its dataset, at its architecture's kernel size."""
    return pca_path(wildcards.dataset, arch_spec(wildcards)["kernel_size"])


def estimate(function, *names):
    """A job's resource request (runtime in minutes, mem_mb in MiB, gpu): `function` of firstlayer.resources, given
    the config and, in order, the job's wildcards or inputs named by `names`; config["resources"] scales or replaces
    it per kind of job. A local run ignores requests unless `snakemake --resources` sets limits.
    """

    def request(wildcards, input):
        values = (
            getattr(wildcards if hasattr(wildcards, n) else input, n) for n in names
        )
        return function(config, *values)

    return request


# --- patch statistics (patches.smk) ---
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
        f"{PATCHES}/shards/{{shard}}.parquet".format(
            dataset=wildcards.dataset, k=wildcards.k, shard=i
        )
        for i in range(len(shards))
    ]


# --- training (train.smk) ---
def model_file(wildcards):
    """A user model's .py file (editing it re-trains the architecture); none for other models."""
    path = source_file(arch_spec(wildcards)["model"])
    return [str(path)] if path is not None else []


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
            # not how often the job saves or reports its progress: that changes no result
            "training": result_settings("training", config["training"]),
            "data": dataset_spec(wildcards),
        }
    )


# --- formula fits (fit.smk) ---
def fit_settings(wildcards):
    return canonical(config["fit"])


# --- pretrained models (pretrained.smk) ---
def pretrained_energy_paths():
    """The pretrained models' energy tables (collected with the trained runs' into the energy table)."""
    return [f"results/pretrained/{name}/energy.parquet" for name in PRETRAINED]


def pretrained_paths():
    """The pretrained models' status table and their dataset's PCA at their kernel sizes (also when no network of
    the grid trains on that dataset); nothing when none is configured."""
    if not PRETRAINED:
        return []
    dataset = config["pretrained"]["dataset"]
    pcas = [pca_path(dataset, k) for k in kernel_sizes(config, dataset)]
    return [
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
    """The patch-statistics shards of the pretrained dataset at the model's kernel size (found by running the model
    on the meta device, once per process: firstlayer.modelspec.first_layer_weight)."""
    from types import SimpleNamespace

    from firstlayer.modelspec import first_layer_weight

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
