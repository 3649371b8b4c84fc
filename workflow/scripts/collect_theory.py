"""Concatenate the per-dataset theory tables: the exact linear check and the label information (first order, and
the Gaussian label information of both orders)."""

from firstlayer.analysis import label_information_summary
from firstlayer.io import job_log, read_tables, stamp, write_table

with job_log(snakemake.log[0]):
    i, o = snakemake.input, snakemake.output
    write_table(read_tables(i.check_profiles), o.check_profiles)
    summary = read_tables(i.check_summary)
    write_table(summary, o.check_summary)
    info = read_tables(i.label_information)
    write_table(info, o.label_information)
    write_table(read_tables(i.gaussian), o.gaussian)
    write_table(read_tables(i.gaussian_summary), o.gaussian_summary)
    label_summary = label_information_summary(info)
    write_table(label_summary, o.label_summary, stamp(snakemake.rule, snakemake.params.code, {}, [info]))
    print(summary.to_string(index=False))
    print(label_summary.to_string(index=False))
