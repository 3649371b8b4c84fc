"""Fit the linear-systems formula by effective time tau to every profile of every run and snapshot."""

import pandas as pd

from firstlayer.io import job_log, write_table
from firstlayer.theory import fit_frame

with job_log(snakemake.log[0]):
    energy = pd.read_parquet(snakemake.input.energy)
    fits = fit_frame(energy, **snakemake.params.fit)
    write_table(fits, snakemake.output.fits)
    print(f"{len(fits)} profiles fitted; correlation median {fits.correlation.median():.3f}")
