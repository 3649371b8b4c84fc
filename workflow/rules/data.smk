checkpoint prepare_dataset:
    output:
        images="results/data/{dataset}/images.npy",
        manifest="results/data/{dataset}/manifest.parquet",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=prepare_dataset_mem_mb,
        runtime=prepare_dataset_runtime,
    params:
        spec=dataset_spec,
    script:
        "../scripts/prepare_dataset.py"
