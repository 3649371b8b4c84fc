"""Figure: first-layer filters at init and after training (one run per architecture), beside the patch PCA basis."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_filters, render_figure

with job_log(snakemake.log[0]):
    runs = []
    for path in snakemake.input.snapshots:
        keys = ["dataset", "arch", "labels", "seed", "step", "filter", "position", "weight"]
        snapshots = pd.read_parquet(path, columns=keys)
        first_seed = snapshots["seed"] == snapshots["seed"].min()
        ends = snapshots["step"].isin([0, snapshots["step"].max()])
        runs.append(snapshots[first_seed & ends])
    columns = ["component", "eigenvalue", "eigenvector", "kernel_size"]
    # results/patches/{dataset}/k{k}/pca.parquet: the dataset is in the path
    pca = pd.concat(
        [pd.read_parquet(p, columns=columns).assign(dataset=Path(p).parts[-3]) for p in snakemake.input.pca],
        ignore_index=True,
    )
    figure = plot_filters(pd.concat(runs, ignore_index=True), pca)
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
