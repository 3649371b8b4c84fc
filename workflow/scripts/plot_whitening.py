"""Figure: response flatness of the data, the initial and the trained first layers."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_whitening, render_figure

with job_log(snakemake.log[0]):
    figure = plot_whitening(pd.read_parquet(snakemake.input.whitening))
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
