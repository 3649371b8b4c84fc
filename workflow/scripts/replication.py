"""The replication table: each claim of the paper, measured on this run (Parquet and Markdown)."""

from pathlib import Path

import pandas as pd

from firstlayer.io import job_log, write_table
from firstlayer.replication import replication_table, to_markdown

with job_log(snakemake.log[0]):
    i = snakemake.input
    table = replication_table(
        summary=pd.read_parquet(i.summary),
        pairs=pd.read_parquet(i.pairs),
        fits=pd.read_parquet(i.fits),
        whitening=pd.read_parquet(i.whitening),
        frozen=pd.read_parquet(i.frozen),
        check=pd.read_parquet(i.check),
        label_info=pd.read_parquet(i.label_summary),
        matched_summary=pd.read_parquet(i.matched_summary),
        matched=pd.read_parquet(i.matched),
        accuracy=pd.read_parquet(i.accuracy),
    )
    write_table(table.astype({"holds": "object"}), snakemake.output.parquet)
    markdown = to_markdown(table)
    title = "# Replication of Chowers & Weiss (ICML 2023) on this run\n\n"
    Path(snakemake.output.markdown).write_text(title + markdown)
    print(markdown)
