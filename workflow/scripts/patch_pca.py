"""Sum the patch moments of all shards of a dataset at one kernel size, normalise them like the network input (the
dataset's normalisation table) and write their PCA."""

import pandas as pd

from firstlayer.config import config_hash
from firstlayer.datasets import normalisation_values
from firstlayer.io import job_log, write_table
from firstlayer.patches import moments_from_frames, normalise_moments, pca_frame

with job_log(snakemake.log[0]):
    k = int(snakemake.wildcards.k)
    frames = [pd.read_parquet(path) for path in snakemake.input.shards]
    raw = moments_from_frames(frames, "patch")
    normalisation = pd.read_parquet(snakemake.input.normalisation)
    mean, std = normalisation_values(normalisation)
    print(f"{len(frames)} shard(s), {raw.count} patches of {k}x{k}; input mean {mean} std {std}")
    pca = pca_frame(normalise_moments(raw, mean, std), dataset=snakemake.wildcards.dataset, kernel_size=k)
    pca["input_mean"] = [mean] * len(pca)
    pca["input_std"] = [std] * len(pca)
    hashes = sorted(f["config_hash"].iloc[0] for f in frames)
    # the normalisation is a function of the same images as the shards: their hashes say it all
    write_table(pca, snakemake.output.pca, config_hash({"shards": hashes, "k": k}))
    print(f"leading eigenvalues {pca.eigenvalue.to_numpy()[:5]}")
