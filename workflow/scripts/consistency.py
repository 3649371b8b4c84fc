"""Pairwise correlations of final energy profiles across seeds, architectures, init scales, datasets and label modes
(the pretrained models' too when config pretrained.in_consistency is set), each W - W0 pair with its runs' regimes
and the untrained-bank null."""

from firstlayer.analysis import (
    LEARNING_MODES,
    PRETRAINED,
    consistency_summary,
    final_profiles,
    pairwise_consistency,
    profile_contrast,
)
from firstlayer.io import job_log, read_table, stamp, write_table
from firstlayer.regime import annotate_pairs, spectra

with job_log(snakemake.log[0]):
    p = snakemake.params
    modes = (*LEARNING_MODES, PRETRAINED) if p.with_pretrained else LEARNING_MODES
    energy, regimes = read_table(snakemake.input.energy), read_table(snakemake.input.regimes)
    profiles = final_profiles(energy, modes)
    a = p.analysis
    pairs = pairwise_consistency(profiles, p.architectures)
    pairs = annotate_pairs(pairs, regimes, spectra(energy), draws=a["null_draws"])
    summary = consistency_summary(pairs, n_boot=a["bootstrap"], confidence=a["confidence"])
    settings = {"analysis": a, "with_pretrained": p.with_pretrained, "architectures": p.architectures}
    mark = stamp(snakemake.rule, p.code, settings, [energy, regimes])
    write_table(pairs, snakemake.output.pairs, mark)
    write_table(summary, snakemake.output.summary, mark)
    write_table(profile_contrast(profiles), snakemake.output.contrast, mark)
    print(summary.to_string(index=False))
