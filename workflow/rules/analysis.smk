rule collect_metrics:
    input:
        metrics=job_paths(f"results/train/{JOB_PATTERN}/metrics.parquet"),
    output:
        metrics="results/tables/metrics.parquet",
    log:
        "results/logs/collect_metrics.log",
    benchmark:
        "results/benchmarks/collect_metrics.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/collect_tables.py"


rule consistency:
    input:
        energy="results/tables/energy.parquet",
    output:
        pairs="results/tables/consistency.parquet",
        summary="results/tables/consistency_summary.parquet",
        contrast="results/tables/profile_contrast.parquet",
    log:
        "results/logs/consistency.log",
    benchmark:
        "results/benchmarks/consistency.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/consistency.py"
