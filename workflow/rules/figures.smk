rule plot_profiles:
    input:
        energy="results/tables/energy.parquet",
    output:
        figure="results/figures/profiles.png",
    log:
        "results/logs/plot_profiles.log",
    benchmark:
        "results/benchmarks/plot_profiles.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_profiles.py"


rule plot_fit:
    input:
        energy="results/tables/energy.parquet",
        fits="results/tables/fits.parquet",
    output:
        figure="results/figures/fit_overlay.png",
    log:
        "results/logs/plot_fit.log",
    benchmark:
        "results/benchmarks/plot_fit.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_fit.py"


rule plot_consistency:
    input:
        pairs="results/tables/consistency.parquet",
    output:
        figure="results/figures/consistency.png",
    log:
        "results/logs/plot_consistency.log",
    benchmark:
        "results/benchmarks/plot_consistency.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_consistency.py"
