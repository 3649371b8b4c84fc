"""Response flatness (whitening) of the data, the initial and the trained first layers, per run."""

import pandas as pd

from firstlayer.analysis import whitening_frame, whitening_summary
from firstlayer.io import job_log, write_table

with job_log(snakemake.log[0]):
    whitening = whitening_frame(pd.read_parquet(snakemake.input.energy))
    summary = whitening_summary(whitening)
    write_table(whitening, snakemake.output.whitening)
    write_table(summary, snakemake.output.summary)
    print(summary.to_string(index=False))
