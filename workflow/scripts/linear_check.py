"""The exact linear check on one dataset's patches: gradient descent on a bank of linear filters vs the closed form."""

import numpy as np

from firstlayer.io import job_log, load_dataset, read_table, stamp, write_table
from firstlayer.patches import sample_patches
from firstlayer.theory import check_steps, linear_check

with job_log(snakemake.log[0]):
    t, name = snakemake.params.theory, snakemake.wildcards.dataset
    dataset = load_dataset(snakemake.input.images, snakemake.input.manifest, mmap=True, name=name)
    images, _ = dataset.split("train")
    pca = read_table(snakemake.input.pca, dataset=name, kernel_size=t["kernel_size"])
    mean, std = np.asarray(pca["input_mean"].iloc[0]), np.asarray(pca["input_std"].iloc[0])
    patches = sample_patches(images, t["kernel_size"], mean, std, t["patches"], t["seed"])
    cov = np.cov(patches, rowvar=False, bias=True)
    steps = check_steps(np.linalg.eigvalsh(cov), t["eta_fraction"], t["steps"], t["max_steps"])
    print(f"{len(patches)} patches of {t['kernel_size']}x{t['kernel_size']}, {t['filters']} filters, steps {steps}")
    profiles, summary = linear_check(
        patches, filters=t["filters"], steps=steps, eta_fraction=t["eta_fraction"], seed=t["seed"]
    )
    keys = {"dataset": name, "kernel_size": t["kernel_size"]}
    mark = stamp(snakemake.rule, snakemake.params.code, t, [dataset.manifest, pca])
    write_table(profiles.assign(**keys), snakemake.output.profiles, mark)
    write_table(summary.assign(**keys), snakemake.output.summary, mark)
    print(summary.to_string(index=False))
