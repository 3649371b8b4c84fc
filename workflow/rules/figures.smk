# Figures (PNG + SVG, from the tables only) and the HTML report's pages: report() items, captions in workflow/report/.

# The filter figure: one training job per architecture, its first with true labels, else random, else frozen.
FILTER_JOBS = [
    min(
        (job for job in JOBS if job.arch == arch),
        key=lambda job: ("true", "random", "frozen").index(job.labels),
    )
    for arch in dict.fromkeys(job.arch for job in JOBS)
]


# Each figure once: its tables and where the report shows it (category, subcategory, label). Rule plot_<figure> draws
# it as firstlayer.plots.plot_<figure>(**tables, **options) in scripts/plot.py (an input that is a list: concatenated).
FIGURES = {
    "profiles": dict(
        input={"energy": table("energy")},
        in_report=("3 Energy profiles", "by condition", "energy profiles by condition"),
    ),
    "consistency": dict(
        input={"pairs": table("consistency")},
        in_report=(
            "3 Energy profiles",
            "consistency across runs",
            "consistency heatmap",
        ),
    ),
    "fit_overlay": dict(
        input={"energy": table("energy"), "fits": table("fits")},
        in_report=("4 Formula fit", "final profiles", "formula fit overlay"),
    ),
    "evolution": dict(
        input={"energy": table("energy"), "fits": table("fits")},
        in_report=("4 Formula fit", "over training", "profile and tau over training"),
    ),
    "filters": dict(
        input={
            "snapshots": [job_file(job, "snapshots.parquet") for job in FILTER_JOBS],
            "pca": sorted({run_pca(job) for job in FILTER_JOBS}),
        },
        in_report=("2 Training", "first-layer filters", "filters and PCA basis"),
    ),
    "accuracy": dict(
        input={"metrics": table("metrics"), "frozen": table("frozen_accuracy")},
        in_report=("2 Training", "accuracy", "accuracy and frozen control"),
    ),
    "whitening": dict(
        input={"whitening": table("whitening")},
        in_report=("5 Whitening", "response flatness", "whitening"),
    ),
    "linear_check": dict(
        input={
            "profiles": table("linear_check"),
            "summary": table("linear_check_summary"),
        },
        in_report=("6 Theory check", "exact linear check", "linear check"),
    ),
    "matched_tau": dict(
        input={"distances": table("tau_distance"), "matched": table("matched_tau")},
        in_report=(
            "3 Energy profiles",
            "consistency at matched effective time",
            "correlation against effective-time distance",
        ),
    ),
}

# Local rules: on a cluster they take seconds beside Snakemake instead of cluster jobs (workflow/profiles/slurm).
for figure, spec in FIGURES.items():
    category, subcategory, label = spec["in_report"]

    rule:
        name:
            f"plot_{figure}"
        input:
            **spec["input"],
        output:
            **{
                fmt: report(
                    f"results/figures/{figure}.{fmt}",
                    caption=f"../report/{figure}.rst",
                    category=category,
                    subcategory=subcategory,
                    labels={"figure": label, "format": fmt.upper()},
                )
                for fmt in ("png", "svg")
            },
        log:
            f"results/logs/plot_{figure}.log",
        benchmark:
            f"results/benchmarks/plot_{figure}.tsv"
        localrule: True
        conda:
            "../../envs/firstlayer.yaml"
        params:
            code=code("plot"),
            plot=f"plot_{figure}",
            options=spec.get("options", {}),
        script:
            "../scripts/plot.py"


rule report_replication:
    input:
        replication=table("replication"),
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
    localrule: True
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("report_replication"),
    script:
        "../scripts/report_replication.py"


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
    localrule: True
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("report_configuration"),
        config=lambda wildcards: config,
    script:
        "../scripts/report_configuration.py"
