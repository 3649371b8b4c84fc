"""Consistency of energy profiles across conditions (PAPER.md section 3): pairwise Pearson correlations."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from firstlayer.theory import pearson

#: Columns that identify a training run.
RUN_KEYS = ["dataset", "arch", "labels", "seed"]
#: What a pair of runs differs in, named in words.
FACTOR_NAMES = {"dataset": "dataset", "arch": "architecture", "labels": "labels", "seed": "seed"}


def final_profiles(energy: pd.DataFrame) -> pd.DataFrame:
    """Tidy energy -> one row per (run, kind) with its profile as an array: the last step of W and W - W0, and
    the initial profile as kind 'W0' (W at step 0)."""
    rows = []
    for keys, g in energy.groupby(RUN_KEYS, sort=True):
        last = g["step"].max()
        selections = {
            "W": g[(g.kind == "W") & (g.step == last)],
            "W-W0": g[(g.kind == "W-W0") & (g.step == last)],
            "W0": g[(g.kind == "W") & (g.step == 0)],
        }
        for kind, sel in selections.items():
            if sel.empty:
                continue
            sel = sel.sort_values("component")
            rows.append(
                {
                    **dict(zip(RUN_KEYS, keys, strict=True)),
                    "kind": kind,
                    "step": int(sel["step"].iloc[0]),
                    "kernel_size": int(sel["kernel_size"].iloc[0]),
                    "profile": sel["energy"].to_numpy(),
                }
            )
    return pd.DataFrame(rows)


def relation(a: pd.Series, b: pd.Series) -> str:
    """What two runs differ in, e.g. 'seed' or 'architecture+labels'."""
    diff = [FACTOR_NAMES[k] for k in RUN_KEYS if a[k] != b[k]]
    return "+".join(diff) if diff else "same"


def pairwise_consistency(profiles: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of every pair of final profiles of the same kind and dimension, with the pair's
    relation; plus each run's trained profiles against its own initial profile (relation 'trained vs init')."""
    rows = []
    for kind in ("W", "W-W0"):
        sub = profiles[profiles.kind == kind].reset_index(drop=True)
        for i, j in itertools.combinations(range(len(sub)), 2):
            a, b = sub.loc[i], sub.loc[j]
            if a["kernel_size"] != b["kernel_size"]:
                continue
            rows.append(_pair_row(kind, relation(a, b), a, b))
        init = {tuple(r[k] for k in RUN_KEYS): r for _, r in profiles[profiles.kind == "W0"].iterrows()}
        for _, a in sub.iterrows():
            b = init.get(tuple(a[k] for k in RUN_KEYS))
            if b is not None:
                rows.append(_pair_row(kind, "trained vs init", a, b))
    return pd.DataFrame(rows)


def _pair_row(kind: str, rel: str, a: pd.Series, b: pd.Series) -> dict:
    row = {"kind": kind, "relation": rel, "kernel_size": int(a["kernel_size"])}
    for k in RUN_KEYS:
        row[f"{k}_a"], row[f"{k}_b"] = a[k], b[k]
    row["correlation"] = pearson(a["profile"], b["profile"])
    return row


def consistency_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs -> per (kind, relation, architecture where both runs share one): n, mean, min, max correlation."""
    pairs = pairs.assign(arch=np.where(pairs.arch_a == pairs.arch_b, pairs.arch_a, "(mixed)"))
    out = (
        pairs.groupby(["kind", "relation", "arch"])["correlation"]
        .agg(n="count", mean="mean", min="min", max="max")
        .reset_index()
    )
    return out


def profile_contrast(profiles: pd.DataFrame) -> pd.DataFrame:
    """How far from flat each profile is: coefficient of variation (std / mean) and max / min over components."""
    out = profiles[[*RUN_KEYS, "kind", "step", "kernel_size"]].copy()
    out["coefficient_of_variation"] = [float(np.std(p) / np.mean(p)) for p in profiles["profile"]]
    out["max_over_min"] = [float(np.max(p) / max(np.min(p), 1e-300)) for p in profiles["profile"]]
    return out
