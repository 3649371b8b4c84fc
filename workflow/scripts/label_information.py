"""Label information of one dataset at one kernel size: spread of the class-mean patches per PCA component."""

import numpy as np
import pandas as pd

from firstlayer.analysis import label_information
from firstlayer.energy import pca_basis
from firstlayer.io import job_log, load_dataset, write_table

with job_log(snakemake.log[0]):
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True)
    images, labels = dataset.split("train")
    pca = pd.read_parquet(snakemake.input.pca)
    eigenvalues, basis = pca_basis(pca)
    mean, std = np.asarray(pca["input_mean"].iloc[0]), np.asarray(pca["input_std"].iloc[0])
    k = int(snakemake.wildcards.k)
    info = label_information(np.asarray(images), np.asarray(labels), k, mean, std, eigenvalues, basis)
    info = info.assign(dataset=snakemake.wildcards.dataset, kernel_size=k)
    write_table(info, snakemake.output.info, pca["config_hash"].iloc[0])
    share = info["between_class_variance"].sum() / info["eigenvalue"].sum()
    print(f"{share:.3%} of the patch variance lies between class means; largest ratio {info['ratio'].max():.3f}")
