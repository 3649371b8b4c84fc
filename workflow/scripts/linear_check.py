"""The exact linear check on one dataset's patches: gradient descent on a bank of linear filters vs the closed form."""

import numpy as np
import pandas as pd

from firstlayer.config import config_hash
from firstlayer.io import job_log, load_dataset, write_table
from firstlayer.patches import sample_patches
from firstlayer.theory import check_steps, linear_check

with job_log(snakemake.log[0]):
    t = snakemake.params.theory
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True)
    images, _ = dataset.split("train")
    pca = pd.read_parquet(snakemake.input.pca)
    mean, std = np.asarray(pca["input_mean"].iloc[0]), np.asarray(pca["input_std"].iloc[0])
    patches = sample_patches(images, t["kernel_size"], mean, std, t["patches"], t["seed"])
    cov = np.cov(patches, rowvar=False, bias=True)
    steps = check_steps(np.linalg.eigvalsh(cov), t["eta_fraction"], t["steps"], t["max_steps"])
    print(f"{len(patches)} patches of {t['kernel_size']}x{t['kernel_size']}, {t['filters']} filters, steps {steps}")
    profiles, summary = linear_check(
        patches, filters=t["filters"], steps=steps, eta_fraction=t["eta_fraction"], seed=t["seed"]
    )
    keys = {"dataset": snakemake.wildcards.dataset, "kernel_size": t["kernel_size"]}
    digest = config_hash({**t, "pca": pca["config_hash"].iloc[0]})
    write_table(profiles.assign(**keys), snakemake.output.profiles, digest)
    write_table(summary.assign(**keys), snakemake.output.summary, digest)
    print(summary.to_string(index=False))
