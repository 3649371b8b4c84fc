"""Pairwise correlations of final energy profiles across seeds, architectures, datasets and label modes (the
pretrained models' too when config pretrained.in_consistency is set)."""

from firstlayer.analysis import (
    LEARNING_MODES,
    PRETRAINED,
    consistency_summary,
    final_profiles,
    pairwise_consistency,
    profile_contrast,
)
from firstlayer.io import job_log, read_table, stamp, write_table

with job_log(snakemake.log[0]):
    p = snakemake.params
    modes = (*LEARNING_MODES, PRETRAINED) if p.with_pretrained else LEARNING_MODES
    energy = read_table(snakemake.input.energy)
    profiles = final_profiles(energy, modes)
    pairs = pairwise_consistency(profiles)
    a = p.analysis
    summary = consistency_summary(pairs, n_boot=a["bootstrap"], confidence=a["confidence"])
    mark = stamp(snakemake.rule, p.code, {"analysis": a, "with_pretrained": p.with_pretrained}, [energy])
    write_table(pairs, snakemake.output.pairs, mark)
    write_table(summary, snakemake.output.summary, mark)
    write_table(profile_contrast(profiles), snakemake.output.contrast, mark)
    print(summary.to_string(index=False))
