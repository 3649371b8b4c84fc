"""Report page: the run's configuration (validated, defaults filled in) and its config files as given."""

from pathlib import Path

from firstlayer.codehash import config_hash
from firstlayer.io import job_log
from firstlayer.report import configuration_html

with job_log(snakemake.log[0]):
    config = snakemake.params.config
    sources = {str(path): Path(path).read_text() for path in snakemake.input.configfiles}
    Path(snakemake.output.html).write_text(configuration_html(config, sources, config_hash(config)))
