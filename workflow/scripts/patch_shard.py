"""Exact raw moments (count, sum, sum of outer products) of all k x k patches of one shard of the training images."""

import numpy as np
import torch

from firstlayer.config import config_hash, shard_bounds
from firstlayer.io import job_log, load_dataset, write_table
from firstlayer.patches import raw_moments, shard_moments_frame

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    k, shard = int(snakemake.wildcards.k), int(snakemake.wildcards.shard)
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True)
    images, _ = dataset.split("train")
    bounds = shard_bounds(images.shape[0], snakemake.params.shard_size)
    if shard >= len(bounds):
        raise ValueError(f"shard {shard} does not exist: {images.shape[0]} training images make {len(bounds)}")
    start, stop = bounds[shard]
    part = np.ascontiguousarray(images[start:stop])  # reads only this shard's pages
    print(f"shard {shard + 1}/{len(bounds)}: training images [{start}, {stop}), kernel {k}x{k}")
    options = {"images_per_chunk": snakemake.params.images_per_chunk, "device": snakemake.params.device}
    patch, pixel = raw_moments(part, k, progress=lambda done, n: print(f"  {done}/{n} images"), **options)
    frame = shard_moments_frame(patch, pixel, kernel_size=k, start=start, stop=stop, images=images.shape[0])
    data_hash = dataset.manifest["config_hash"].iloc[0]
    write_table(frame.assign(dataset=snakemake.wildcards.dataset, shard=shard), snakemake.output.moments,
                config_hash({"data": data_hash, "k": k, "shard": [start, stop]}))  # fmt: skip
    print(f"{patch.count} patches")
