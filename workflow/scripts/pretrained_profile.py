"""Energy profile of a pretrained torchvision model's first layer in the PCA basis of a dataset's patches,
normalised as the model's input; a table with status 'missing: <path>' when the checkpoint is not there."""

import sys

import pandas as pd

from firstlayer.config import config_hash
from firstlayer.io import job_log, write_table
from firstlayer.patches import moments_from_frames
from firstlayer.pretrained import pretrained_frame

s = snakemake.params.settings
with job_log(snakemake.log[0]):
    frames = [pd.read_parquet(path) for path in snakemake.input.shards]
    raw = moments_from_frames(frames, "patch")
    table = pretrained_frame(s["name"], s["weights"], s["dataset"], s["checkpoint"], raw)
    status = table["status"].iloc[0]
    print(f"{s['name']} ({table['weights'].iloc[0]}) on {s['dataset']}: {status}, {raw.count} patches")
    message = (
        f"firstlayer: pretrained {s['name']}: no checkpoint, {status}; wrote a table without profile "
        "(nothing is downloaded: put the file there or set pretrained.models[].path)"
    )
    print(f"leading energies {table['energy'].to_numpy()[:5]}" if status == "ok" else message)
    hashes = sorted(f["config_hash"].iloc[0] for f in frames)
    write_table(table, snakemake.output.energy, config_hash({"settings": s, "shards": hashes}))
if status != "ok":  # also outside the job log, so that it shows in the Snakemake output
    print(message, file=sys.stderr)
