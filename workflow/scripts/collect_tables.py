"""Concatenate per-job tables into one tidy table; its rows keep the provenance of the jobs that made them, and a
set that mixes rows one rule made with different code is refused."""

from firstlayer.io import job_log, read_tables, write_table

with job_log(snakemake.log[0]):
    table = read_tables(snakemake.input)
    write_table(table, snakemake.output[0])
    print(f"{len(snakemake.input)} tables, {len(table)} rows -> {snakemake.output[0]}")
