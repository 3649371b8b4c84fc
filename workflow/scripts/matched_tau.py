"""Consistency at matched effective time: each pair of runs compared at its snapshots whose fitted tau are closest."""

import pandas as pd

from firstlayer.analysis import matched_tau, matched_tau_summary, snapshot_profiles, tau_distance
from firstlayer.config import config_hash
from firstlayer.io import job_log, write_table

with job_log(snakemake.log[0]):
    i, o, a = snakemake.input, snakemake.output, snakemake.params.analysis
    fits, pairs = pd.read_parquet(i.fits), pd.read_parquet(i.pairs)
    distances = tau_distance(pairs, snapshot_profiles(pd.read_parquet(i.energy), fits))
    matched = matched_tau(pairs, distances)
    summary = matched_tau_summary(matched, n_boot=a["bootstrap"], confidence=a["confidence"])
    digest = config_hash({"runs": sorted(set(fits["config_hash"])), "analysis": a})
    for table, path in ((distances, o.distances), (matched, o.matched), (summary, o.summary)):
        write_table(table, path, digest)
    print(summary.to_string(index=False))
