"""Figure: the exact linear check, simulation against closed form and formula."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_linear_check, render_figure

with job_log(snakemake.log[0]):
    figure = plot_linear_check(pd.read_parquet(snakemake.input.profiles), pd.read_parquet(snakemake.input.summary))
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
