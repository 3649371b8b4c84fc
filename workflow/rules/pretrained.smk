# Pretrained torchvision models (config `pretrained`): each model's profile joins the energy table (labels
# 'pretrained'), on one dataset's patches; its status (checkpoint found or missing) goes to the pretrained table.
PRETRAINED = {m["name"]: m for m in config["pretrained"]["models"]}


# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    collect_pretrained,


rule pretrained_profile:
    input:
        shards=pretrained_shards,
        checkpoint=pretrained_checkpoint,
    output:
        energy="results/pretrained/{name}/energy.parquet",
        status="results/pretrained/{name}/status.parquet",
    log:
        "results/logs/pretrained_profile/{name}.log",
    benchmark:
        "results/benchmarks/pretrained_profile/{name}.tsv"
    wildcard_constraints:
        name="[A-Za-z][A-Za-z0-9_]*",
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("pretrained_profile"),
        settings=pretrained_settings,
    script:
        "../scripts/pretrained_profile.py"


rule collect_pretrained:
    input:
        status=[f"results/pretrained/{name}/status.parquet" for name in PRETRAINED],
    output:
        status="results/tables/pretrained.parquet",
    log:
        "results/logs/collect_pretrained.log",
    benchmark:
        "results/benchmarks/collect_pretrained.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("collect_tables"),
    script:
        "../scripts/collect_tables.py"
