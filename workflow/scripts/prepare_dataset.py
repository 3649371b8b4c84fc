"""Prepare one dataset: images as one uint8 array, plus a Parquet manifest that says what the array is."""

from firstlayer.datasets import image_folder_notes, prepare_dataset
from firstlayer.io import job_log, save_dataset, stamp

with job_log(snakemake.log[0]):
    spec = dict(snakemake.params.spec)
    print(f"preparing dataset {snakemake.wildcards.dataset}: {spec}")
    dataset = prepare_dataset(spec)
    mark = stamp(snakemake.rule, snakemake.params.code, spec)
    save_dataset(dataset, snakemake.output.images, snakemake.output.manifest, name=snakemake.wildcards.dataset,
                 mark=mark)  # fmt: skip
    counts = dataset.manifest.groupby("split").size().to_dict()
    print(f"{dataset.images.shape} images, {dataset.num_classes} classes, per split: {counts}")
    for note in image_folder_notes(dataset.manifest):
        print(note)
