"""Final train / held-out test accuracy per run family, and the frozen-first-layer control against full training."""

import pandas as pd

from firstlayer.analysis import chance_accuracy, final_accuracy, frozen_accuracy, precision_warnings
from firstlayer.io import job_log, write_table

with job_log(snakemake.log[0]):
    metrics = pd.read_parquet(snakemake.input.metrics)
    chance = {
        name: chance_accuracy(pd.read_parquet(path, columns=["split", "label"]))
        for name, path in zip(snakemake.params.datasets, snakemake.input.manifests, strict=True)
    }
    for warning in precision_warnings(metrics):
        print(f"warning: {warning}")
    accuracy, frozen = final_accuracy(metrics, chance), frozen_accuracy(metrics, chance)
    write_table(accuracy, snakemake.output.accuracy)
    write_table(frozen, snakemake.output.frozen)
    print(f"chance level (most frequent test class): {chance}")
    print(accuracy.to_string(index=False))
    print(frozen.to_string(index=False) if len(frozen) else "no run family has both true-label and frozen runs")
