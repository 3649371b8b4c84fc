rule train:
    input:
        images=f"{DATA}/images.npy",
        manifest=f"{DATA}/manifest.parquet",
        normalisation=f"{DATA}/normalisation.parquet",
        model=model_file,
    output:
        snapshots=f"{RUN}/snapshots.parquet",
        metrics=f"{RUN}/metrics.parquet",
    log:
        "results/logs/train/{dataset}/{arch}/{labels}/seed{seeds}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/{labels}/seed{seeds}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    resources:
        mem_mb=estimate(
            job_resources.train_mem_mb, "dataset", "arch", "seeds", "images"
        ),
        runtime=estimate(
            job_resources.train_runtime, "dataset", "arch", "seeds", "manifest"
        ),
        # one GPU unless training.device is cpu: a CPU-only cluster gets no GPU request
        gpu=estimate(job_resources.train_gpu),
    params:
        code=code("train"),
        settings=train_settings,
        # progress of an interrupted job: beside the outputs but not one of them (a failed job's outputs are deleted)
        resume=f"{RUN}.resume.pt",
    script:
        "../scripts/train.py"
