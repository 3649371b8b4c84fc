"""Consistency at matched effective time: each pair of runs compared at its snapshots whose fitted tau are closest,
with the two snapshots' regimes and the untrained-bank null."""

from firstlayer.analysis import matched_tau, matched_tau_summary, snapshot_profiles, tau_distance
from firstlayer.io import job_log, read_table, stamp, write_table
from firstlayer.regime import annotate_pairs, spectra

with job_log(snakemake.log[0]):
    i, o, a = snakemake.input, snakemake.output, snakemake.params.analysis
    energy, fits, pairs, regimes = (read_table(x) for x in (i.energy, i.fits, i.pairs, i.regimes))
    distances = tau_distance(pairs, snapshot_profiles(energy, fits))
    annotations = ["regime_a", "regime_b", "informative", "null_r"]  # set again below, at the matched snapshots
    matched = matched_tau(pairs.drop(columns=annotations, errors="ignore"), distances)
    matched = annotate_pairs(matched, regimes, spectra(energy), step_columns=("step_a", "step_b"),
                             draws=a["null_draws"])  # fmt: skip
    summary = matched_tau_summary(matched, n_boot=a["bootstrap"], confidence=a["confidence"])
    mark = stamp(snakemake.rule, snakemake.params.code, {"analysis": a}, [energy, fits, pairs, regimes])
    for table, path in ((distances, o.distances), (matched, o.matched), (summary, o.summary)):
        write_table(table, path, mark)
    print(summary.to_string(index=False))
