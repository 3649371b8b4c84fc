"""Energy profiles of one training job's first-layer snapshots (W and W - W0, per seed) in its dataset's patch
PCA basis. The snapshots must be this job's, complete: its run keys, settings hash and every step of its schedule."""

import pandas as pd

from firstlayer.codehash import config_hash
from firstlayer.energy import KINDS, energy_table, snapshot_arrays
from firstlayer.io import check_keys, job_log, pca_basis, read_table, stamp, write_table
from firstlayer.settings import TrainSettings

with job_log(snakemake.log[0]):
    i, run = snakemake.input, snakemake.params.run
    n_train = int((pd.read_parquet(i.manifest, columns=["split"])["split"] == "train").sum())
    keys = {"dataset": run["dataset"], "arch": run["arch"], "labels": run["labels"], "seed": run["seeds"]}
    snapshots = read_table(i.snapshots, **keys, config_hash=config_hash(run))
    steps = TrainSettings.from_config(run, n_train).snapshot_steps
    pca = read_table(i.pca, dataset=run["dataset"], kernel_size=run["architecture"]["kernel_size"])
    eigenvalues, basis = pca_basis(pca)
    frames = []
    for _, snaps in snapshots.groupby("seed", sort=True):
        check_keys(snaps, i.snapshots, step=steps)  # every step of the schedule, per seed
        first = snaps.iloc[0]
        keys = {k: first[k] for k in ("dataset", "arch", "model", "labels", "seed")}
        keys["kernel_size"] = int(pca["kernel_size"].iloc[0])
        # a frozen first layer never moves: W - W0 is zero, only W (= W0) is a profile
        kinds = ("W",) if keys["labels"] == "frozen" else KINDS
        energy = energy_table(snapshot_arrays(snaps), eigenvalues, basis, keys, kinds=kinds)
        frames.append(energy)
        print(f"{energy.step.nunique()} snapshots x {basis.shape[0]} components for {keys}")
    mark = stamp(snakemake.rule, snakemake.params.code, {}, [snapshots, pca])
    write_table(pd.concat(frames, ignore_index=True), snakemake.output.energy, mark)
