# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    collect_theory,


rule linear_check:
    input:
        images=f"{DATA}/images.npy",
        manifest=f"{DATA}/manifest.parquet",
        pca=lambda wildcards: pca_path(
            wildcards.dataset, config["theory"]["kernel_size"]
        ),
    output:
        profiles="results/theory/{dataset}/linear_check.parquet",
        summary="results/theory/{dataset}/linear_check_summary.parquet",
    log:
        "results/logs/linear_check/{dataset}.log",
    benchmark:
        "results/benchmarks/linear_check/{dataset}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("linear_check"),
        theory=lambda wildcards: config["theory"],
    script:
        "../scripts/linear_check.py"


rule label_information:
    input:
        images=f"{DATA}/images.npy",
        manifest=f"{DATA}/manifest.parquet",
        pca=f"{PATCHES}/pca.parquet",
    output:
        info=f"{PATCHES}/label_information.parquet",
        gaussian=f"{PATCHES}/label_information_gaussian.parquet",
        gaussian_summary=f"{PATCHES}/label_information_gaussian_summary.parquet",
    log:
        "results/logs/label_information/{dataset}/k{k}.log",
    benchmark:
        "results/benchmarks/label_information/{dataset}/k{k}.tsv"
    # on a cluster, with the PCA's patch statistics in one job
    group:
        "patches"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("label_information"),
        settings=lambda wildcards: config["label_information"],
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
        gaussian=[
            p.replace("pca.parquet", "label_information_gaussian.parquet")
            for p in pca_paths()
        ],
        gaussian_summary=[
            p.replace("pca.parquet", "label_information_gaussian_summary.parquet")
            for p in pca_paths()
        ],
    output:
        check_profiles="results/tables/linear_check.parquet",
        check_summary="results/tables/linear_check_summary.parquet",
        label_information="results/tables/label_information.parquet",
        label_summary="results/tables/label_information_summary.parquet",
        gaussian="results/tables/label_information_gaussian.parquet",
        gaussian_summary="results/tables/label_information_gaussian_summary.parquet",
    log:
        "results/logs/collect_theory.log",
    benchmark:
        "results/benchmarks/collect_theory.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("collect_theory"),
    script:
        "../scripts/collect_theory.py"
