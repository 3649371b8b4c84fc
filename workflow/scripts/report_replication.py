"""Report page: the replication table as HTML."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log
from firstlayer.report import replication_html

with job_log(snakemake.log[0]):
    Path(snakemake.output.html).write_text(replication_html(pd.read_parquet(snakemake.input.replication)))
