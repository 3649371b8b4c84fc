"""Figure: energy profiles by condition, with the init profile."""

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_profiles

with job_log(snakemake.log[0]):
    plot_profiles(pd.read_parquet(snakemake.input.energy)).savefig(
        snakemake.output.figure, dpi=130, bbox_inches="tight"
    )
