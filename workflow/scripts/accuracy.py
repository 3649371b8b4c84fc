"""Final train / held-out test accuracy per run family, and the frozen-first-layer control against full training."""

from firstlayer.analysis import chance_accuracy, final_accuracy, frozen_accuracy, precision_warnings
from firstlayer.io import job_log, read_table, stamp, write_table

with job_log(snakemake.log[0]):
    p = snakemake.params
    metrics = read_table(snakemake.input.metrics)
    manifests = {name: read_table(path) for name, path in zip(p.datasets, snakemake.input.manifests, strict=True)}
    chance = {name: chance_accuracy(manifest[["split", "label"]]) for name, manifest in manifests.items()}
    for warning in precision_warnings(metrics):
        print(f"warning: {warning}")
    accuracy, frozen = final_accuracy(metrics, chance), frozen_accuracy(metrics, chance)
    mark = stamp(snakemake.rule, p.code, {"datasets": p.datasets}, [metrics, *manifests.values()])
    write_table(accuracy, snakemake.output.accuracy, mark)
    write_table(frozen, snakemake.output.frozen, mark)
    print(f"chance level (most frequent test class): {chance}")
    print(accuracy.to_string(index=False))
    print(frozen.to_string(index=False) if len(frozen) else "no run family has both true-label and frozen runs")
