"""Fit the linear-systems formula by effective time tau to every profile of every run and snapshot."""

from firstlayer.io import job_log, read_table, stamp, write_table
from firstlayer.theory import fit_frame

with job_log(snakemake.log[0]):
    energy = read_table(snakemake.input.energy)
    fits = fit_frame(energy, **snakemake.params.fit)
    # the fit settings are in the hash: other settings, other fits from the same energies
    write_table(
        fits, snakemake.output.fits, stamp(snakemake.rule, snakemake.params.code, snakemake.params.fit, [energy])
    )
    print(f"{len(fits)} profiles fitted; correlation median {fits.correlation.median():.3f}")
