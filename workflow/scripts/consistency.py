"""Pairwise correlations of final energy profiles across seeds, architectures, datasets and label modes (the
pretrained models' too when config pretrained.in_consistency is set)."""

import pandas as pd

from firstlayer.analysis import (
    LEARNING_MODES,
    PRETRAINED,
    consistency_summary,
    final_profiles,
    pairwise_consistency,
    profile_contrast,
)
from firstlayer.io import job_log, write_table

with job_log(snakemake.log[0]):
    modes = (*LEARNING_MODES, PRETRAINED) if snakemake.params.with_pretrained else LEARNING_MODES
    profiles = final_profiles(pd.read_parquet(snakemake.input.energy), modes)
    pairs = pairwise_consistency(profiles)
    a = snakemake.params.analysis
    summary = consistency_summary(pairs, n_boot=a["bootstrap"], confidence=a["confidence"])
    write_table(pairs, snakemake.output.pairs)
    write_table(summary, snakemake.output.summary)
    write_table(profile_contrast(profiles), snakemake.output.contrast)
    print(summary.to_string(index=False))
