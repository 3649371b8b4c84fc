# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
# Not a group of cluster jobs: Snakemake re-forms group-components chunks when a checkpoint (prepare_dataset)
# completes and can then submit a running chunk's profiles a second time.
localrules:
    energy_profile,
    collect_energy,


rule energy_profile:
    input:
        pca=run_pca,
        snapshots=f"{RUN}/snapshots.parquet",
        # the number of training images: the snapshots' step schedule is checked against the run's
        manifest=f"{DATA}/manifest.parquet",
    output:
        energy="results/energy/{dataset}/{arch}/{labels}/seed{seeds}.parquet",
    log:
        "results/logs/energy_profile/{dataset}/{arch}/{labels}/seed{seeds}.log",
    benchmark:
        "results/benchmarks/energy_profile/{dataset}/{arch}/{labels}/seed{seeds}.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("energy_profile"),
        run=train_settings,
    script:
        "../scripts/energy_profile.py"


# The trained runs' profiles and the pretrained models' (workflow/rules/pretrained.smk) in one table.
rule collect_energy:
    input:
        energy=job_paths(f"results/energy/{JOB_PATTERN}.parquet"),
        pretrained=lambda wildcards: pretrained_energy_paths(),
    output:
        energy="results/tables/energy.parquet",
    log:
        "results/logs/collect_energy.log",
    benchmark:
        "results/benchmarks/collect_energy.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("collect_tables"),
    script:
        "../scripts/collect_tables.py"
