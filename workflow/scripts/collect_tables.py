"""Concatenate per-run tables into one tidy table."""

from firstlayer.io import job_log, read_tables, write_table

with job_log(snakemake.log[0]):
    table = read_tables(snakemake.input)
    write_table(table, snakemake.output[0])
    print(f"{len(snakemake.input)} tables, {len(table)} rows -> {snakemake.output[0]}")
