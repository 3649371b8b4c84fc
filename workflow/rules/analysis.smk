# On a cluster these take seconds: they run beside Snakemake instead of as cluster jobs (workflow/profiles/slurm).
localrules:
    collect_metrics,
    regime,
    consistency,
    matched_tau,
    whitening,
    accuracy,
    replication,


rule collect_metrics:
    input:
        metrics=job_paths(f"{RUN}/metrics.parquet"),
    output:
        metrics="results/tables/metrics.parquet",
    log:
        "results/logs/collect_metrics.log",
    benchmark:
        "results/benchmarks/collect_metrics.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("collect_tables"),
    script:
        "../scripts/collect_tables.py"


# Each snapshot's regime: a pair of profiles informs a claim only where neither sits in a limit of the formula,
# which every network shares (docs/method.md, When a comparison can say no).
rule regime:
    input:
        energy="results/tables/energy.parquet",
        fits="results/tables/fits.parquet",
    output:
        regimes="results/tables/regime.parquet",
        nulls="results/tables/regime_null.parquet",
        controls="results/tables/negative_control.parquet",
    log:
        "results/logs/regime.log",
    benchmark:
        "results/benchmarks/regime.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("regime"),
        analysis=lambda wildcards: config["analysis"],
    script:
        "../scripts/regime.py"


rule consistency:
    input:
        energy="results/tables/energy.parquet",
        regimes="results/tables/regime.parquet",
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
    params:
        code=code("consistency"),
        analysis=lambda wildcards: config["analysis"],
        with_pretrained=lambda wildcards: config["pretrained"]["in_consistency"],
        architectures=lambda wildcards: architectures(),
    script:
        "../scripts/consistency.py"


# Every pair of runs of the consistency table again, at the snapshots whose fitted tau are closest
# (docs/method.md, Matched effective time).
rule matched_tau:
    input:
        energy="results/tables/energy.parquet",
        fits="results/tables/fits.parquet",
        pairs="results/tables/consistency.parquet",
        regimes="results/tables/regime.parquet",
    output:
        matched="results/tables/matched_tau.parquet",
        summary="results/tables/matched_tau_summary.parquet",
        distances="results/tables/tau_distance.parquet",
    log:
        "results/logs/matched_tau.log",
    benchmark:
        "results/benchmarks/matched_tau.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("matched_tau"),
        analysis=lambda wildcards: config["analysis"],
    script:
        "../scripts/matched_tau.py"


rule whitening:
    input:
        energy="results/tables/energy.parquet",
    output:
        whitening="results/tables/whitening.parquet",
        summary="results/tables/whitening_summary.parquet",
    log:
        "results/logs/whitening.log",
    benchmark:
        "results/benchmarks/whitening.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("whitening"),
    script:
        "../scripts/whitening.py"


rule accuracy:
    input:
        metrics="results/tables/metrics.parquet",
        manifests=expand(f"{DATA}/manifest.parquet", dataset=DATASETS),
    output:
        accuracy="results/tables/accuracy.parquet",
        frozen="results/tables/frozen_accuracy.parquet",
    log:
        "results/logs/accuracy.log",
    benchmark:
        "results/benchmarks/accuracy.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("accuracy"),
        datasets=DATASETS,
    script:
        "../scripts/accuracy.py"


rule replication:
    input:
        summary="results/tables/consistency_summary.parquet",
        pairs="results/tables/consistency.parquet",
        fits="results/tables/fits.parquet",
        whitening="results/tables/whitening_summary.parquet",
        frozen="results/tables/frozen_accuracy.parquet",
        accuracy="results/tables/accuracy.parquet",
        check="results/tables/linear_check_summary.parquet",
        label_summary="results/tables/label_information_summary.parquet",
        matched="results/tables/matched_tau.parquet",
        regimes="results/tables/regime.parquet",
        nulls="results/tables/regime_null.parquet",
        controls="results/tables/negative_control.parquet",
        gaussian="results/tables/label_information_gaussian_summary.parquet",
    output:
        parquet="results/tables/replication.parquet",
        markdown="results/tables/replication.md",
    log:
        "results/logs/replication.log",
    benchmark:
        "results/benchmarks/replication.tsv"
    conda:
        "../../envs/firstlayer.yaml"
    params:
        code=code("replication"),
        analysis=lambda wildcards: config["analysis"],
    script:
        "../scripts/replication.py"
