"""Consistency at matched effective time: each pair of runs compared at its snapshots whose fitted tau are closest."""

from firstlayer.analysis import matched_tau, matched_tau_summary, snapshot_profiles, tau_distance
from firstlayer.io import job_log, read_table, stamp, write_table

with job_log(snakemake.log[0]):
    i, o, a = snakemake.input, snakemake.output, snakemake.params.analysis
    energy, fits, pairs = read_table(i.energy), read_table(i.fits), read_table(i.pairs)
    distances = tau_distance(pairs, snapshot_profiles(energy, fits))
    matched = matched_tau(pairs, distances)
    summary = matched_tau_summary(matched, n_boot=a["bootstrap"], confidence=a["confidence"])
    mark = stamp(snakemake.rule, snakemake.params.code, {"analysis": a}, [energy, fits, pairs])
    for table, path in ((distances, o.distances), (matched, o.matched), (summary, o.summary)):
        write_table(table, path, mark)
    print(summary.to_string(index=False))
