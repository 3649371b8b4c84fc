# firstlayer: what CNNs learn in their first layer, and why (Chowers & Weiss, ICML 2023).
# This file is the table of contents; grids and input functions are in workflow/rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


# The study in a few paragraphs, opening `snakemake --report results/report.html`.
report: "workflow/report/workflow.rst"


# A --configfile given on the command line replaces config.yaml (it is not merged into it).
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/patches.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/energy.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/pretrained.smk"


rule all:
    default_target: True
    input:
        all_outputs,
