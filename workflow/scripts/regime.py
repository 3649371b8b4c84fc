"""Every snapshot's regime (early, late or informative), the untrained-bank nulls per width and spectrum, and each
run's negative control (docs/method.md, When a comparison can say no)."""

from firstlayer.analysis import snapshot_profiles
from firstlayer.io import job_log, read_table, stamp, write_table
from firstlayer.regime import control_frame, null_frame, regime_frame, spectra

with job_log(snakemake.log[0]):
    i, o, a = snakemake.input, snakemake.output, snakemake.params.analysis
    energy, fits = read_table(i.energy), read_table(i.fits)
    snapshots = snapshot_profiles(energy, fits)
    eigenvalues = spectra(energy)
    regimes = regime_frame(snapshots, eigenvalues)
    nulls = null_frame(eigenvalues, regimes["filters"].unique(), draws=a["null_draws"])
    controls = control_frame(regimes, snapshots)
    mark = stamp(snakemake.rule, snakemake.params.code, {"analysis": a}, [energy, fits])
    for table, path in ((regimes, o.regimes), (nulls, o.nulls), (controls, o.controls)):
        write_table(table, path, mark)
    final = regimes[regimes["step"] == regimes.groupby(["dataset", "arch", "labels", "seed"])["step"].transform("max")]
    print(final.groupby(["dataset", "arch", "labels"])["regime"].value_counts().unstack(fill_value=0).to_string())
    print(nulls.to_string(index=False))
