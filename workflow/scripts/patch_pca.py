"""Exact patch moments of all training images of a dataset at one kernel size, then their PCA."""

from firstlayer.config import config_hash
from firstlayer.datasets import channel_stats
from firstlayer.io import job_log, load_dataset, write_table
from firstlayer.patches import patch_moments, pca_frame

with job_log(snakemake.log[0]):
    k = int(snakemake.wildcards.k)
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest)
    images, _ = dataset.split("train")
    mean, std = channel_stats(images)
    print(f"{images.shape[0]} training images, kernel {k}x{k}, input mean {mean} std {std}")
    moments = patch_moments(
        images,
        mean,
        std,
        k,
        images_per_chunk=snakemake.params.images_per_chunk,
        progress=lambda done, n: print(f"  {done}/{n} images"),
    )
    pca = pca_frame(moments, dataset=snakemake.wildcards.dataset, kernel_size=k)
    data_hash = dataset.manifest["config_hash"].iloc[0]
    write_table(pca, snakemake.output.pca, config_hash({"data": data_hash, "k": k}))
    print(f"{moments.count} patches; leading eigenvalues {pca.eigenvalue.to_numpy()[:5]}")
