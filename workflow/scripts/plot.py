"""Figure: one figure of the report (an entry of FIGURES, workflow/rules/figures.smk) as PNG and SVG, drawn by the
firstlayer.plots function `params.plot` from the tables of the named inputs, with `params.options`."""

from pathlib import Path

from firstlayer import plots
from firstlayer.io import job_log, read_tables

with job_log(snakemake.log[0]):
    # an input is one table or a list of them (concatenated); its name is the plot function's argument
    tables = {
        name: read_tables([paths] if isinstance(paths, str) else paths) for name, paths in snakemake.input.items()
    }
    figure = getattr(plots, snakemake.params.plot)(**tables, **snakemake.params.options)
    for path in snakemake.output:
        Path(path).write_bytes(plots.render_figure(figure, Path(path).suffix.lstrip(".")))
