"""Figure: the profile over training steps, with the fitted effective time."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_evolution, render_figure

with job_log(snakemake.log[0]):
    figure = plot_evolution(pd.read_parquet(snakemake.input.energy), pd.read_parquet(snakemake.input.fits))
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
