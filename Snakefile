# firstlayer: what CNNs learn in their first layer, and why (Chowers & Weiss, ICML 2023).
# This file is the table of contents; grids and input functions are in workflow/rules/common.smk.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# Every job runs the firstlayer package of this checkout (workflow/), before any installed copy: this process by
# sys.path, its jobs by PYTHONPATH (inherited, and set again by a cluster job's own Snakemake). Under --sdm conda,
# which drops PYTHONPATH, the link workflow/scripts/firstlayer serves (nothing is installed in that env).
PACKAGE_ROOT = str(Path(workflow.basedir) / "workflow")
sys.path.insert(0, PACKAGE_ROOT)
_inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
os.environ.update(PYTHONPATH=os.pathsep.join([PACKAGE_ROOT, *_inherited]))
from firstlayer.config import config_file_problem


# The study in a few paragraphs, opening `snakemake --report results/report.html`.
report: "workflow/report/workflow.rst"


# A --configfile given on the command line replaces config.yaml (it is not merged into it); Snakemake reads it
# before this file runs. Snakemake's message for a YAML error names no line, so config.yaml is checked first.
if not workflow.config_settings.configfiles:
    if problem := config_file_problem("config.yaml"):
        sys.exit(f"firstlayer: {problem}")

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/patches.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/energy.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/residuals.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/pretrained.smk"


rule all:
    default_target: True
    input:
        all_outputs,
