"""The replication table: each claim of the paper, measured on this run (Parquet and Markdown)."""

from pathlib import Path

from firstlayer.io import job_log, read_table, stamp, write_table
from firstlayer.replication import replication_table, to_markdown

with job_log(snakemake.log[0]):
    i = snakemake.input
    tables = {name: read_table(getattr(i, name)) for name in i.keys()}
    table = replication_table(
        summary=tables["summary"],
        pairs=tables["pairs"],
        fits=tables["fits"],
        whitening=tables["whitening"],
        frozen=tables["frozen"],
        check=tables["check"],
        label_info=tables["label_summary"],
        matched=tables["matched"],
        accuracy=tables["accuracy"],
        regimes=tables["regimes"],
        nulls=tables["nulls"],
        controls=tables["controls"],
        gaussian=tables["gaussian"],
        analysis=snakemake.params.analysis,
    )
    mark = stamp(snakemake.rule, snakemake.params.code, {"analysis": snakemake.params.analysis}, tables.values())
    write_table(table.astype({"holds": "object"}), snakemake.output.parquet, mark)
    markdown = to_markdown(table)
    title = "# Replication of Chowers & Weiss (ICML 2023) on this run\n\n"
    Path(snakemake.output.markdown).write_text(title + markdown)
    print(markdown)
