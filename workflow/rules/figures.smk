# Figures (PNG + SVG, from the tables only) and the pages of the HTML report (`snakemake --report`). Every output is
# a report() item with its caption in workflow/report/, in categories numbered by stage.


# The filter figure shows one training job per architecture: its first in grid order with true labels, else random
# labels, else a frozen first layer.
FILTER_JOBS = [
    min(
        (job for job in JOBS if job.arch == arch),
        key=lambda job: ("true", "random", "frozen").index(job.labels),
    )
    for arch in dict.fromkeys(job.arch for job in JOBS)
]


# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    plot_profiles,
    plot_consistency,
    plot_fit,
    plot_evolution,
    plot_filters,
    plot_accuracy,
    plot_whitening,
    plot_linear_check,
    report_replication,
    report_configuration,


rule plot_profiles:
    input:
        energy="results/tables/energy.parquet",
    output:
        png=report(
            "results/figures/profiles.png",
            caption="../report/profiles.rst",
            category="3 Energy profiles",
            subcategory="by condition",
            labels={"figure": "energy profiles by condition", "format": "PNG"},
        ),
        svg=report(
            "results/figures/profiles.svg",
            caption="../report/profiles.rst",
            category="3 Energy profiles",
            subcategory="by condition",
            labels={"figure": "energy profiles by condition", "format": "SVG"},
        ),
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


rule plot_consistency:
    input:
        pairs="results/tables/consistency.parquet",
    output:
        png=report(
            "results/figures/consistency.png",
            caption="../report/consistency.rst",
            category="3 Energy profiles",
            subcategory="consistency across runs",
            labels={"figure": "consistency heatmap", "format": "PNG"},
        ),
        svg=report(
            "results/figures/consistency.svg",
            caption="../report/consistency.rst",
            category="3 Energy profiles",
            subcategory="consistency across runs",
            labels={"figure": "consistency heatmap", "format": "SVG"},
        ),
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


rule plot_fit:
    input:
        energy="results/tables/energy.parquet",
        fits="results/tables/fits.parquet",
    output:
        png=report(
            "results/figures/fit_overlay.png",
            caption="../report/fit_overlay.rst",
            category="4 Formula fit",
            subcategory="final profiles",
            labels={"figure": "formula fit overlay", "format": "PNG"},
        ),
        svg=report(
            "results/figures/fit_overlay.svg",
            caption="../report/fit_overlay.rst",
            category="4 Formula fit",
            subcategory="final profiles",
            labels={"figure": "formula fit overlay", "format": "SVG"},
        ),
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


rule plot_evolution:
    input:
        energy="results/tables/energy.parquet",
        fits="results/tables/fits.parquet",
    output:
        png=report(
            "results/figures/evolution.png",
            caption="../report/evolution.rst",
            category="4 Formula fit",
            subcategory="over training",
            labels={"figure": "profile and tau over training", "format": "PNG"},
        ),
        svg=report(
            "results/figures/evolution.svg",
            caption="../report/evolution.rst",
            category="4 Formula fit",
            subcategory="over training",
            labels={"figure": "profile and tau over training", "format": "SVG"},
        ),
    log:
        "results/logs/plot_evolution.log",
    benchmark:
        "results/benchmarks/plot_evolution.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_evolution.py"


rule plot_filters:
    input:
        snapshots=[
            f"results/train/{job.dataset}/{job.arch}/{job.labels}/seed{job.seed_key}/snapshots.parquet"
            for job in FILTER_JOBS
        ],
        pca=sorted({run_pca(job) for job in FILTER_JOBS}),
    output:
        png=report(
            "results/figures/filters.png",
            caption="../report/filters.rst",
            category="2 Training",
            subcategory="first-layer filters",
            labels={"figure": "filters and PCA basis", "format": "PNG"},
        ),
        svg=report(
            "results/figures/filters.svg",
            caption="../report/filters.rst",
            category="2 Training",
            subcategory="first-layer filters",
            labels={"figure": "filters and PCA basis", "format": "SVG"},
        ),
    log:
        "results/logs/plot_filters.log",
    benchmark:
        "results/benchmarks/plot_filters.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_filters.py"


rule plot_accuracy:
    input:
        metrics="results/tables/metrics.parquet",
        frozen="results/tables/frozen_accuracy.parquet",
    output:
        png=report(
            "results/figures/accuracy.png",
            caption="../report/accuracy.rst",
            category="2 Training",
            subcategory="accuracy",
            labels={"figure": "accuracy and frozen control", "format": "PNG"},
        ),
        svg=report(
            "results/figures/accuracy.svg",
            caption="../report/accuracy.rst",
            category="2 Training",
            subcategory="accuracy",
            labels={"figure": "accuracy and frozen control", "format": "SVG"},
        ),
    log:
        "results/logs/plot_accuracy.log",
    benchmark:
        "results/benchmarks/plot_accuracy.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_accuracy.py"


rule plot_whitening:
    input:
        whitening="results/tables/whitening.parquet",
    output:
        png=report(
            "results/figures/whitening.png",
            caption="../report/whitening.rst",
            category="5 Whitening",
            subcategory="response flatness",
            labels={"figure": "whitening", "format": "PNG"},
        ),
        svg=report(
            "results/figures/whitening.svg",
            caption="../report/whitening.rst",
            category="5 Whitening",
            subcategory="response flatness",
            labels={"figure": "whitening", "format": "SVG"},
        ),
    log:
        "results/logs/plot_whitening.log",
    benchmark:
        "results/benchmarks/plot_whitening.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_whitening.py"


rule plot_linear_check:
    input:
        profiles="results/tables/linear_check.parquet",
        summary="results/tables/linear_check_summary.parquet",
    output:
        png=report(
            "results/figures/linear_check.png",
            caption="../report/linear_check.rst",
            category="6 Theory check",
            subcategory="exact linear check",
            labels={"figure": "linear check", "format": "PNG"},
        ),
        svg=report(
            "results/figures/linear_check.svg",
            caption="../report/linear_check.rst",
            category="6 Theory check",
            subcategory="exact linear check",
            labels={"figure": "linear check", "format": "SVG"},
        ),
    log:
        "results/logs/plot_linear_check.log",
    benchmark:
        "results/benchmarks/plot_linear_check.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/plot_linear_check.py"


rule report_replication:
    input:
        replication="results/tables/replication.parquet",
    output:
        html=report(
            "results/report/replication.html",
            caption="../report/replication.rst",
            category="1 Summary",
            subcategory="replication of the paper's claims",
            labels={"page": "replication table"},
        ),
    log:
        "results/logs/report_replication.log",
    benchmark:
        "results/benchmarks/report_replication.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_replication_table.py"


rule report_configuration:
    input:
        configfiles=workflow.configfiles,
    output:
        html=report(
            "results/report/configuration.html",
            caption="../report/configuration.rst",
            category="1 Summary",
            subcategory="configuration",
            labels={"page": "configuration"},
        ),
    log:
        "results/logs/report_configuration.log",
    benchmark:
        "results/benchmarks/report_configuration.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        config=lambda wildcards: config,
    script:
        "../scripts/plot_configuration.py"
