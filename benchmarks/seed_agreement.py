"""How far two seeds' W - W0 energy profiles agree (Pearson r, as the replication table's "seed vs seed" row)
at log-spaced steps of one run, on `textures`, with config.yaml's settings of an architecture: how the default's
training lengths were chosen (docs/method.md, Replication criteria). Calibration seeds (10, 11) are not those
of any config's grid, so the choice is not made on the runs it is judged on. Run by hand:
python benchmarks/seed_agreement.py --arch resnet20 --steps 240 [--labels true random] [--seeds 10 11]"""

from __future__ import annotations

import argparse
import itertools
import time

import pandas as pd
import torch
from check_texture import ARCHS, train_textures

from firstlayer.energy import energy_profile
from firstlayer.patches import patch_moments, patch_pca
from firstlayer.settings import log_schedule
from firstlayer.theory import pearson


def seed_agreement(arch: str, labels: str, steps: int, seeds: list[int], points: int) -> pd.DataFrame:
    """Train `arch` on textures from each seed -> (step, seed_a, seed_b, r) of their W - W0 profiles."""
    results, x, (mean, std) = train_textures(arch, seeds, steps=steps, labels=labels, eval_steps=(steps,),
                                             snapshot_steps=log_schedule(steps, points))  # fmt: skip
    _, basis = patch_pca(patch_moments(x, mean, std, ARCHS[arch]["k"]).covariance())
    profiles = [
        {t: energy_profile((w - r.snapshots[0]).flatten(1).numpy(), basis) for t, w in r.snapshots.items() if t}
        for r in results
    ]
    rows = [
        {"step": t, "seed_a": seeds[i], "seed_b": seeds[j], "r": pearson(profiles[i][t], profiles[j][t])}
        for i, j in itertools.combinations(range(len(seeds)), 2)
        for t in sorted(profiles[i])
    ]
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20", choices=list(ARCHS), help="architecture (config.yaml's)")
    parser.add_argument("--labels", nargs="+", default=["true", "random"], choices=["true", "random"])
    parser.add_argument("--steps", type=int, default=240, help="training steps (the longest length examined)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11], help="calibration seeds")
    parser.add_argument("--points", type=int, default=6, help="log-spaced snapshots")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tables = []
    for labels in args.labels:
        start = time.perf_counter()
        tables.append(seed_agreement(args.arch, labels, args.steps, args.seeds, args.points).assign(labels=labels))
        print(f"{args.arch}, {labels} labels: {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.concat(tables)
    print(f"\ntextures, {args.arch}: seed-vs-seed r of W - W0 profiles (mean over pairs)")
    wide = table.pivot_table(index="step", columns="labels", values="r", aggfunc="mean")
    wide["mean"] = wide.mean(axis=1)
    print(wide.round(3).to_string())
    print("(mean: over label modes, as the replication row averages every seed pair of the architecture)")


if __name__ == "__main__":
    main()
