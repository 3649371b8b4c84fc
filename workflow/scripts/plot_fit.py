"""Figure: measured final profiles against the fitted formulas."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_fit_overlay, render_figure

with job_log(snakemake.log[0]):
    figure = plot_fit_overlay(pd.read_parquet(snakemake.input.energy), pd.read_parquet(snakemake.input.fits))
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
