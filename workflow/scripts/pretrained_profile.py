"""Energy profile of a pretrained torchvision model's first layer in the PCA basis of a dataset's patches,
normalised as the model's input, in the trained runs' energy layout; its status row ('missing: <path>' and an energy
table of no rows when the checkpoint is not there)."""

import sys

from firstlayer.io import job_log, read_table, stamp, write_table
from firstlayer.patches import moments_from_frames
from firstlayer.pretrained import pretrained_tables

s = snakemake.params.settings
with job_log(snakemake.log[0]):
    frames = [read_table(path, dataset=s["dataset"]) for path in snakemake.input.shards]
    raw = moments_from_frames(frames, "patch")
    energy, status = pretrained_tables(s["name"], s["weights"], s["dataset"], s["checkpoint"], raw)
    state = status["status"].iloc[0]
    print(f"{s['name']} ({status['weights'].iloc[0]}) on {s['dataset']}: {state}, {raw.count} patches")
    message = (
        f"firstlayer: pretrained {s['name']}: no checkpoint, {state}; no profile "
        "(nothing is downloaded: put the file there or set pretrained.models[].path)"
    )
    print(f"leading energies {energy['energy'].to_numpy()[:5]}" if state == "ok" else message)
    mark = stamp(snakemake.rule, snakemake.params.code, s, frames)
    write_table(energy, snakemake.output.energy, mark)
    write_table(status, snakemake.output.status, mark)
if state != "ok":  # also outside the job log, so that it shows in the Snakemake output
    print(message, file=sys.stderr)
