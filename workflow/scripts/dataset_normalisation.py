"""The input normalisation of one dataset: per-channel mean and std of its training images (datasets.channel_stats),
the one that training and the patch PCA use."""

from firstlayer.datasets import normalisation_frame
from firstlayer.io import job_log, load_dataset, write_table

with job_log(snakemake.log[0]):
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True)
    images, _ = dataset.split("train")
    table = normalisation_frame(images, snakemake.wildcards.dataset)
    write_table(table, snakemake.output.normalisation, dataset.manifest["config_hash"].iloc[0])
    print(table.to_string(index=False))
