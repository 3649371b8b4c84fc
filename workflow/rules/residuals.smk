# Where nonlinear networks leave the formula: residuals of the final W - W0 profiles against their one-parameter fit,
# beside the components' label information (docs/method.md), and their figure.


rule residuals:
    input:
        energy="results/tables/energy.parquet",
        fits="results/tables/fits.parquet",
        label_information="results/tables/label_information_gaussian.parquet",
    output:
        residuals="results/tables/residuals.parquet",
        summary="results/tables/residual_summary.parquet",
    log:
        "results/logs/residuals.log",
    benchmark:
        "results/benchmarks/residuals.tsv"
    localrule: True
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("residuals"),
    script:
        "../scripts/residuals.py"


# Drawn like the figures of FIGURES (workflow/rules/figures.smk) by scripts/plot.py, outside that table (which
# tests/test_plots.py fixes), so its rule is not named plot_<figure>.
rule residuals_figure:
    input:
        residuals="results/tables/residuals.parquet",
        summary="results/tables/residual_summary.parquet",
    output:
        **{
            fmt: report(
                f"results/figures/residuals.{fmt}",
                caption="../report/residuals.rst",
                category="4 Formula fit",
                subcategory="residuals against label information",
                labels={
                    "figure": "residuals and label information",
                    "format": fmt.upper(),
                },
            )
            for fmt in ("png", "svg")
        },
    log:
        "results/logs/plot_residuals.log",
    benchmark:
        "results/benchmarks/plot_residuals.tsv"
    localrule: True
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("plot"),
        plot="plot_residuals",
        options={},
    script:
        "../scripts/plot.py"
