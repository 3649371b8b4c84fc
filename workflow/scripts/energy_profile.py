"""Energy profiles of one run's first-layer snapshots (W and W - W0) in its dataset's patch PCA basis."""

import pandas as pd

from firstlayer.energy import energy_frame, pca_basis, snapshot_arrays
from firstlayer.io import job_log, write_table

with job_log(snakemake.log[0]):
    snapshots = pd.read_parquet(snakemake.input.snapshots)
    pca = pd.read_parquet(snakemake.input.pca)
    eigenvalues, basis = pca_basis(pca)
    energy = energy_frame(snapshot_arrays(snapshots), eigenvalues, basis)
    first = snapshots.iloc[0]
    keys = {k: first[k] for k in ("dataset", "arch", "model", "labels", "seed")}
    energy = energy.assign(**keys, kernel_size=int(pca["kernel_size"].iloc[0]))
    write_table(energy, snakemake.output.energy, first["config_hash"])
    print(f"{energy.step.nunique()} snapshots x {basis.shape[0]} components for {keys}")
