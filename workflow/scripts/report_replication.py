"""Report page: the replication table as HTML."""

from pathlib import Path

from firstlayer.io import job_log, read_table
from firstlayer.report import replication_html

with job_log(snakemake.log[0]):
    Path(snakemake.output.html).write_text(replication_html(read_table(snakemake.input.replication)))
