"""Figure: measured profiles against the fitted formula."""

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_fit_overlay

with job_log(snakemake.log[0]):
    energy, fits = pd.read_parquet(snakemake.input.energy), pd.read_parquet(snakemake.input.fits)
    plot_fit_overlay(energy, fits).savefig(snakemake.output.figure, dpi=130, bbox_inches="tight")
