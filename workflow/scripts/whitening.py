"""Response flatness (whitening) of the data, the initial and the trained first layers, per run."""

from firstlayer.analysis import whitening_frame, whitening_summary
from firstlayer.io import job_log, read_table, stamp, write_table

with job_log(snakemake.log[0]):
    energy = read_table(snakemake.input.energy)
    whitening = whitening_frame(energy)
    summary = whitening_summary(whitening)
    mark = stamp(snakemake.rule, snakemake.params.code, {}, [energy])
    write_table(whitening, snakemake.output.whitening, mark)
    write_table(summary, snakemake.output.summary, mark)
    print(summary.to_string(index=False))
