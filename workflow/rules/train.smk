rule train:
    input:
        images="results/data/{dataset}/images.npy",
        manifest="results/data/{dataset}/manifest.parquet",
        model=model_file,
    output:
        snapshots="results/train/{dataset}/{arch}/{labels}/seed{seeds}/snapshots.parquet",
        metrics="results/train/{dataset}/{arch}/{labels}/seed{seeds}/metrics.parquet",
    log:
        "results/logs/train/{dataset}/{arch}/{labels}/seed{seeds}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/{labels}/seed{seeds}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpu,
    params:
        settings=train_settings,
        # progress of an interrupted job: beside the outputs but not one of them (a failed job's outputs are deleted)
        resume="results/train/{dataset}/{arch}/{labels}/seed{seeds}.resume.pt",
    script:
        "../scripts/train.py"
