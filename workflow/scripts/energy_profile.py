"""Energy profiles of one training job's first-layer snapshots (W and W - W0, per seed) in its dataset's patch
PCA basis."""

import pandas as pd

from firstlayer.energy import KINDS, energy_table, pca_basis, snapshot_arrays
from firstlayer.io import job_log, write_table

with job_log(snakemake.log[0]):
    snapshots = pd.read_parquet(snakemake.input.snapshots)
    pca = pd.read_parquet(snakemake.input.pca)
    eigenvalues, basis = pca_basis(pca)
    frames = []
    for _, snaps in snapshots.groupby("seed", sort=True):
        first = snaps.iloc[0]
        keys = {k: first[k] for k in ("dataset", "arch", "model", "labels", "seed")}
        keys["kernel_size"] = int(pca["kernel_size"].iloc[0])
        # a frozen first layer never moves: W - W0 is zero, only W (= W0) is a profile
        kinds = ("W",) if keys["labels"] == "frozen" else KINDS
        energy = energy_table(snapshot_arrays(snaps), eigenvalues, basis, keys, kinds=kinds)
        frames.append(energy)
        print(f"{energy.step.nunique()} snapshots x {basis.shape[0]} components for {keys}")
    write_table(pd.concat(frames, ignore_index=True), snakemake.output.energy, snapshots["config_hash"].iloc[0])
