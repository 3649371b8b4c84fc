rule patch_pca:
    input:
        images="results/data/{dataset}/images.npy",
        manifest="results/data/{dataset}/manifest.parquet",
    output:
        pca="results/patches/{dataset}/k{k}/pca.parquet",
    log:
        "results/logs/patch_pca/{dataset}/k{k}.log",
    benchmark:
        "results/benchmarks/patch_pca/{dataset}/k{k}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        images_per_chunk=config["patches"]["images_per_chunk"],
    script:
        "../scripts/patch_pca.py"
