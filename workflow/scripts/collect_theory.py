"""Concatenate the per-dataset theory tables: the exact linear check and the label information."""

from firstlayer.analysis import label_information_summary
from firstlayer.io import job_log, read_tables, write_table

with job_log(snakemake.log[0]):
    write_table(read_tables(snakemake.input.check_profiles), snakemake.output.check_profiles)
    summary = read_tables(snakemake.input.check_summary)
    write_table(summary, snakemake.output.check_summary)
    info = read_tables(snakemake.input.label_information)
    write_table(info, snakemake.output.label_information)
    write_table(label_information_summary(info), snakemake.output.label_summary)
    print(summary.to_string(index=False))
    print(label_information_summary(info).to_string(index=False))
