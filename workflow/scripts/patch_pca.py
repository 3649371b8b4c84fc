"""Sum the patch moments of all shards of a dataset at one kernel size, normalise them like the network input (the
dataset's normalisation table) and write their PCA."""

from firstlayer.datasets import normalisation_values
from firstlayer.io import check_keys, job_log, read_table, stamp, write_table
from firstlayer.patches import moments_from_frames, normalise_moments, pca_frame

with job_log(snakemake.log[0]):
    k, name = int(snakemake.wildcards.k), snakemake.wildcards.dataset
    frames = [read_table(path, dataset=name) for path in snakemake.input.shards]
    for path, frame in zip(snakemake.input.shards, frames, strict=True):
        check_keys(frame[frame.statistic == "patch"], path, kernel_size=k)
    raw = moments_from_frames(frames, "patch")
    normalisation = read_table(snakemake.input.normalisation, dataset=name)
    mean, std = normalisation_values(normalisation)
    print(f"{len(frames)} shard(s), {raw.count} patches of {k}x{k}; input mean {mean} std {std}")
    pca = pca_frame(normalise_moments(raw, mean, std), dataset=name, kernel_size=k)
    pca["input_mean"] = [mean] * len(pca)
    pca["input_std"] = [std] * len(pca)
    write_table(
        pca, snakemake.output.pca, stamp(snakemake.rule, snakemake.params.code, {"k": k}, [*frames, normalisation])
    )
    print(f"leading eigenvalues {pca.eigenvalue.to_numpy()[:5]}")
