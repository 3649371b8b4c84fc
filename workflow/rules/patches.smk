rule patch_shard:
    input:
        images="results/data/{dataset}/images.npy",
        manifest="results/data/{dataset}/manifest.parquet",
    output:
        moments="results/patches/{dataset}/k{k}/shards/{shard}.parquet",
    log:
        "results/logs/patch_shard/{dataset}/k{k}/{shard}.log",
    benchmark:
        "results/benchmarks/patch_shard/{dataset}/k{k}/{shard}.tsv"
    # on a cluster, a PCA's shards and their sum run as one job (see workflow/profiles/slurm)
    group:
        "patches"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=patch_shard_mem_mb,
        runtime=patch_shard_runtime,
    params:
        shard_size=config["patches"]["shard_size"],
        images_per_chunk=config["patches"]["images_per_chunk"],
        device=config["patches"]["device"],
    script:
        "../scripts/patch_shard.py"


rule patch_pca:
    input:
        shards=patch_shards,
    output:
        pca="results/patches/{dataset}/k{k}/pca.parquet",
    log:
        "results/logs/patch_pca/{dataset}/k{k}.log",
    benchmark:
        "results/benchmarks/patch_pca/{dataset}/k{k}.tsv"
    group:
        "patches"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/patch_pca.py"
