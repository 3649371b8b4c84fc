checkpoint prepare_dataset:
    output:
        images=f"{DATA}/images.npy",
        manifest=f"{DATA}/manifest.parquet",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    resources:
        mem_mb=estimate(job_resources.prepare_dataset_mem_mb, "dataset"),
        runtime=estimate(job_resources.prepare_dataset_runtime, "dataset"),
    params:
        code=code("prepare_dataset"),
        spec=dataset_spec,
    script:
        "../scripts/prepare_dataset.py"


# The input normalisation of a dataset (channel mean and std of its training images): computed once, read by the
# patch PCA (and by training).
rule dataset_normalisation:
    input:
        images=f"{DATA}/images.npy",
        manifest=f"{DATA}/manifest.parquet",
    output:
        normalisation=f"{DATA}/normalisation.parquet",
    log:
        "results/logs/dataset_normalisation/{dataset}.log",
    benchmark:
        "results/benchmarks/dataset_normalisation/{dataset}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    resources:
        mem_mb=estimate(job_resources.prepare_dataset_mem_mb, "dataset"),
    params:
        code=code("dataset_normalisation"),
    script:
        "../scripts/dataset_normalisation.py"
