"""Label information of one dataset at one kernel size: spread of the class-mean patches per PCA component (first
order), and the Gaussian mutual information of label and patch from exact class-conditional moments, first and
second order, against labels permuted across images (firstlayer.label_information)."""

import numpy as np

from firstlayer.analysis import label_information
from firstlayer.io import job_log, load_dataset, pca_basis, read_table, stamp, write_table
from firstlayer.label_information import label_information_frames

with job_log(snakemake.log[0]):
    name, k, s = snakemake.wildcards.dataset, int(snakemake.wildcards.k), snakemake.params.settings
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True, name=name)
    images, labels = dataset.split("train")
    pca = read_table(snakemake.input.pca, dataset=name, kernel_size=k)
    eigenvalues, basis = pca_basis(pca)
    mean, std = np.asarray(pca["input_mean"].iloc[0]), np.asarray(pca["input_std"].iloc[0])
    images, labels = np.asarray(images), np.asarray(labels)
    info = label_information(images, labels, k, mean, std, eigenvalues, basis).assign(dataset=name, kernel_size=k)
    rng = np.random.default_rng(s["seed"])
    gaussian, summary = label_information_frames(images, labels, k, mean, std, rng=rng, draws=s["null_draws"])
    mark = stamp(snakemake.rule, snakemake.params.code, s, [dataset.manifest, pca])
    o = snakemake.output
    write_table(info, o.info, mark)
    write_table(gaussian.assign(dataset=name, kernel_size=k), o.gaussian, mark)
    write_table(summary.assign(dataset=name), o.gaussian_summary, mark)
    share = info["between_class_variance"].sum() / info["eigenvalue"].sum()
    print(f"{share:.3%} of the patch variance lies between class means; largest ratio {info['ratio'].max():.3f}")
    row = summary.iloc[0]
    for order in ("first_order", "second_order"):
        null = f"{row[order + '_null_mean']:.4f} ± {row[order + '_null_std']:.4f}"
        print(f"{order}: {row[order]:.4f} nats per patch, null {null} ({s['null_draws']} permutations), "
              f"z {row[order + '_z']:.1f}")  # fmt: skip
