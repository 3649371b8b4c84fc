"""The input normalisation of one dataset: per-channel mean and std of its training images (datasets.channel_stats),
the one that training and the patch PCA use."""

from firstlayer.datasets import normalisation_frame
from firstlayer.io import job_log, load_dataset, stamp, write_table

with job_log(snakemake.log[0]):
    name = snakemake.wildcards.dataset
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True, name=name)
    images, _ = dataset.split("train")
    table = normalisation_frame(images, name)
    write_table(
        table, snakemake.output.normalisation, stamp(snakemake.rule, snakemake.params.code, {}, [dataset.manifest])
    )
    print(table.to_string(index=False))
