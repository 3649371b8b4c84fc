"""Where nonlinear networks leave the formula: per run, the residual per component of the final W - W0 profile
against its one-parameter fit, beside the components' label information; summarised per run and per dataset,
architecture and labels with a permutation null (firstlayer.residuals)."""

from firstlayer.io import job_log, read_table, stamp, write_table
from firstlayer.residuals import residual_frame, residual_summary

with job_log(snakemake.log[0]):
    energy = read_table(snakemake.input.energy)
    fits = read_table(snakemake.input.fits)
    information = read_table(snakemake.input.label_information)
    residuals = residual_frame(energy, fits, information)
    summary = residual_summary(residuals)
    mark = stamp(snakemake.rule, snakemake.params.code, {}, [energy, fits, information])
    write_table(residuals, snakemake.output.residuals, mark)
    write_table(summary, snakemake.output.summary, mark)
    print(summary[summary["level"] == "group"].to_string(index=False))
