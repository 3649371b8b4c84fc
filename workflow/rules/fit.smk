# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    fit_formula,


rule fit_formula:
    input:
        energy="results/tables/energy.parquet",
    output:
        fits="results/tables/fits.parquet",
    log:
        "results/logs/fit_formula.log",
    benchmark:
        "results/benchmarks/fit_formula.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("fit_formula"),
        fit=fit_settings,
    script:
        "../scripts/fit_formula.py"
