rule patch_shard:
    input:
        images=f"{DATA}/images.npy",
        manifest=f"{DATA}/manifest.parquet",
    output:
        moments=f"{PATCHES}/shards/{{shard}}.parquet",
    log:
        "results/logs/patch_shard/{dataset}/k{k}/{shard}.log",
    benchmark:
        "results/benchmarks/patch_shard/{dataset}/k{k}/{shard}.tsv"
    # on a cluster, a PCA's shards and their sum run as one job (see workflow/profiles/slurm)
    group:
        "patches"
    conda:
        "../../envs/firstlayer.yaml"
    resources:
        mem_mb=estimate(job_resources.patch_shard_mem_mb, "dataset"),
        runtime=estimate(job_resources.patch_shard_runtime, "dataset", "k"),
    params:
        code=code("patch_shard"),
        shard_size=config["patches"]["shard_size"],
        images_per_chunk=config["patches"]["images_per_chunk"],
        device=config["patches"]["device"],
    script:
        "../scripts/patch_shard.py"


rule patch_pca:
    input:
        shards=patch_shards,
        normalisation=f"{DATA}/normalisation.parquet",
    output:
        pca=f"{PATCHES}/pca.parquet",
    log:
        "results/logs/patch_pca/{dataset}/k{k}.log",
    benchmark:
        "results/benchmarks/patch_pca/{dataset}/k{k}.tsv"
    group:
        "patches"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("patch_pca"),
    script:
        "../scripts/patch_pca.py"
