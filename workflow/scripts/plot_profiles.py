"""Figure: final energy profiles by condition, with the initial profile dashed."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_profiles, render_figure

with job_log(snakemake.log[0]):
    figure = plot_profiles(pd.read_parquet(snakemake.input.energy))
    for path in snakemake.output:
        Path(path).write_bytes(render_figure(figure, Path(path).suffix.lstrip(".")))
