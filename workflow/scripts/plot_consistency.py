"""Figure: heatmap of the pairwise correlations of final profiles."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_consistency, render_figure

with job_log(snakemake.log[0]):
    figure = plot_consistency(pd.read_parquet(snakemake.input.pairs))
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
