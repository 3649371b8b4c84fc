# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    collect_theory,


rule linear_check:
    input:
        images="results/data/{dataset}/images.npy",
        manifest="results/data/{dataset}/manifest.parquet",
        pca=lambda wildcards: f"results/patches/{wildcards.dataset}/k{config['theory']['kernel_size']}/pca.parquet",
    output:
        profiles="results/theory/{dataset}/linear_check.parquet",
        summary="results/theory/{dataset}/linear_check_summary.parquet",
    log:
        "results/logs/linear_check/{dataset}.log",
    benchmark:
        "results/benchmarks/linear_check/{dataset}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        theory=lambda wildcards: config["theory"],
    script:
        "../scripts/linear_check.py"


rule label_information:
    input:
        images="results/data/{dataset}/images.npy",
        manifest="results/data/{dataset}/manifest.parquet",
        pca="results/patches/{dataset}/k{k}/pca.parquet",
    output:
        info="results/patches/{dataset}/k{k}/label_information.parquet",
    log:
        "results/logs/label_information/{dataset}/k{k}.log",
    benchmark:
        "results/benchmarks/label_information/{dataset}/k{k}.tsv"
    # on a cluster, with the PCA's patch statistics in one job
    group:
        "patches"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/label_information.py"


rule collect_theory:
    input:
        check_profiles=expand(
            "results/theory/{dataset}/linear_check.parquet", dataset=DATASETS
        ),
        check_summary=expand(
            "results/theory/{dataset}/linear_check_summary.parquet", dataset=DATASETS
        ),
        label_information=[
            p.replace("pca.parquet", "label_information.parquet") for p in pca_paths()
        ],
    output:
        check_profiles="results/tables/linear_check.parquet",
        check_summary="results/tables/linear_check_summary.parquet",
        label_information="results/tables/label_information.parquet",
        label_summary="results/tables/label_information_summary.parquet",
    log:
        "results/logs/collect_theory.log",
    benchmark:
        "results/benchmarks/collect_theory.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/collect_theory.py"
