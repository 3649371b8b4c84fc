"""Figure: pairwise consistency heatmap of final profiles."""

import pandas as pd

from firstlayer.io import job_log
from firstlayer.plots import plot_consistency

with job_log(snakemake.log[0]):
    plot_consistency(pd.read_parquet(snakemake.input.pairs)).savefig(
        snakemake.output.figure, dpi=130, bbox_inches="tight"
    )
