# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    collect_pretrained,


rule pretrained_profile:
    input:
        shards=pretrained_shards,
        checkpoint=pretrained_checkpoint,
    output:
        energy="results/pretrained/{name}/energy.parquet",
    log:
        "results/logs/pretrained_profile/{name}.log",
    benchmark:
        "results/benchmarks/pretrained_profile/{name}.tsv"
    wildcard_constraints:
        name="[A-Za-z][A-Za-z0-9_]*",
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        settings=pretrained_settings,
    script:
        "../scripts/pretrained_profile.py"


rule collect_pretrained:
    input:
        energy=[f"results/pretrained/{name}/energy.parquet" for name in PRETRAINED],
    output:
        energy="results/tables/pretrained.parquet",
    log:
        "results/logs/collect_pretrained.log",
    benchmark:
        "results/benchmarks/collect_pretrained.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/collect_tables.py"
