"""Exact raw moments (count, sum, sum of outer products) of all k x k patches of one shard of the training images."""

import numpy as np
import torch

from firstlayer.datasets import shard_bounds
from firstlayer.io import job_log, load_dataset, stamp, write_table
from firstlayer.patches import raw_moments, shard_moments_frame

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    k, shard, p = int(snakemake.wildcards.k), int(snakemake.wildcards.shard), snakemake.params
    dataset = load_dataset(
        snakemake.input.images, snakemake.input.manifest, mmap=True, name=snakemake.wildcards.dataset
    )
    images, _ = dataset.split("train")
    bounds = shard_bounds(images.shape[0], p.shard_size)
    if shard >= len(bounds):
        raise ValueError(f"shard {shard} does not exist: {images.shape[0]} training images make {len(bounds)}")
    start, stop = bounds[shard]
    part = np.ascontiguousarray(images[start:stop])  # reads only this shard's pages
    print(f"shard {shard + 1}/{len(bounds)}: training images [{start}, {stop}), kernel {k}x{k}")
    options = {"images_per_chunk": p.images_per_chunk, "device": p.device}
    patch, pixel = raw_moments(part, k, progress=lambda done, n: print(f"  {done}/{n} images"), **options)
    frame = shard_moments_frame(patch, pixel, kernel_size=k, start=start, stop=stop, images=images.shape[0])
    settings = {"k": k, "shard": [start, stop], **options}
    mark = stamp(snakemake.rule, p.code, settings, [dataset.manifest])
    write_table(frame.assign(dataset=snakemake.wildcards.dataset, shard=shard), snakemake.output.moments, mark)
    print(f"{patch.count} patches")
