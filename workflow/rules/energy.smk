# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    collect_energy,


rule energy_profile:
    input:
        pca=run_pca,
        snapshots="results/train/{dataset}/{arch}/{labels}/seed{seeds}/snapshots.parquet",
    output:
        energy="results/energy/{dataset}/{arch}/{labels}/seed{seeds}.parquet",
    log:
        "results/logs/energy_profile/{dataset}/{arch}/{labels}/seed{seeds}.log",
    benchmark:
        "results/benchmarks/energy_profile/{dataset}/{arch}/{labels}/seed{seeds}.tsv"
    # on a cluster, many profiles run as one job (--group-components in workflow/profiles/slurm)
    group:
        "energy"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        model=lambda wildcards: arch_spec(wildcards)["model"],
    script:
        "../scripts/energy_profile.py"


rule collect_energy:
    input:
        energy=job_paths(f"results/energy/{JOB_PATTERN}.parquet"),
    output:
        energy="results/tables/energy.parquet",
    log:
        "results/logs/collect_energy.log",
    benchmark:
        "results/benchmarks/collect_energy.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/collect_tables.py"
