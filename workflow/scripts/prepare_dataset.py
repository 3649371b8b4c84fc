"""Prepare one dataset: images as one uint8 array, plus a Parquet manifest."""

from firstlayer.config import config_hash
from firstlayer.datasets import image_folder_notes, prepare_dataset
from firstlayer.io import job_log, save_dataset

with job_log(snakemake.log[0]):
    spec = dict(snakemake.params.spec)
    print(f"preparing dataset {snakemake.wildcards.dataset}: {spec}")
    dataset = prepare_dataset(spec)
    dataset.manifest["config_hash"] = config_hash(spec)
    save_dataset(dataset, snakemake.output.images, snakemake.output.manifest)
    counts = dataset.manifest.groupby("split").size().to_dict()
    print(f"{dataset.images.shape} images, {dataset.num_classes} classes, per split: {counts}")
    for note in image_folder_notes(dataset.manifest):
        print(note)
