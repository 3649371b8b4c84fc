"""Figure: accuracy over training and the frozen-first-layer control."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_accuracy, render_figure

with job_log(snakemake.log[0]):
    figure = plot_accuracy(pd.read_parquet(snakemake.input.metrics), pd.read_parquet(snakemake.input.frozen))
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
