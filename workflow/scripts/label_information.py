"""Label information of one dataset at one kernel size: spread of the class-mean patches per PCA component."""

import numpy as np

from firstlayer.analysis import label_information
from firstlayer.io import job_log, load_dataset, pca_basis, read_table, stamp, write_table

with job_log(snakemake.log[0]):
    name, k = snakemake.wildcards.dataset, int(snakemake.wildcards.k)
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True, name=name)
    images, labels = dataset.split("train")
    pca = read_table(snakemake.input.pca, dataset=name, kernel_size=k)
    eigenvalues, basis = pca_basis(pca)
    mean, std = np.asarray(pca["input_mean"].iloc[0]), np.asarray(pca["input_std"].iloc[0])
    info = label_information(np.asarray(images), np.asarray(labels), k, mean, std, eigenvalues, basis)
    info = info.assign(dataset=name, kernel_size=k)
    write_table(info, snakemake.output.info, stamp(snakemake.rule, snakemake.params.code, {}, [dataset.manifest, pca]))
    share = info["between_class_variance"].sum() / info["eigenvalue"].sum()
    print(f"{share:.3%} of the patch variance lies between class means; largest ratio {info['ratio'].max():.3f}")
