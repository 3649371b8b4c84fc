"""Analyses of the energy profiles: pairwise consistency with bootstrap intervals, whitening (response flatness),
label information, the frozen-first-layer accuracy control (docs/method.md: Whitening, Label information)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from firstlayer.theory import pearson

#: Columns that identify a training run.
RUN_KEYS = ["dataset", "arch", "labels", "seed"]
#: What a pair of runs differs in, named in words.
FACTOR_NAMES = {"dataset": "dataset", "arch": "architecture", "labels": "labels", "seed": "seed"}
#: Correlation above which profiles count as "highly consistent" (fixed before looking at any result).
HIGH = 0.9
#: Architecture settings that make the network itself: two entries that differ in one of them are two architectures.
NETWORK_KEYS = ("model", "kernel_size", "width", "first_layer")
#: Architecture settings that say how jobs are grouped or evaluated, not what is learned.
NON_LEARNING_KEYS = ("seeds_per_job", "eval_points")


#: Label modes whose first layer learns (the frozen control keeps its init: W - W0 is zero, nothing to compare).
LEARNING_MODES = ("true", "random")
#: The label mode of a pretrained checkpoint's profile (its rows: arch = the model name, one W at a step > 0).
PRETRAINED = "pretrained"
#: Columns that identify one bank's whitening rows.
WHITENING_KEYS = (*RUN_KEYS, "model", "kernel_size")


def last_step(frame: pd.DataFrame) -> pd.Series:
    """True on the rows of each run's last step (runs keyed by ``RUN_KEYS``)."""
    return frame["step"] == frame.groupby(RUN_KEYS)["step"].transform("max")


def final_profiles(energy: pd.DataFrame, modes: tuple[str, ...] = LEARNING_MODES) -> pd.DataFrame:
    """Tidy energy -> one row per (run, kind) with its profile as an array: the last step of W and W - W0, and
    the initial profile as kind 'W0' (W at step 0). Only runs of label ``modes`` (default: those that learn; add
    ``PRETRAINED`` to compare pretrained checkpoints' W too)."""
    rows = []
    energy = energy[energy["labels"].isin(modes)]
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
                    **({"filters": int(sel["filters"].iloc[0])} if "filters" in sel else {}),
                    "profile": sel["energy"].to_numpy(),
                }
            )
    return pd.DataFrame(rows)


def arch_relation(a: Mapping[str, object], b: Mapping[str, object]) -> str:
    """Two architecture entries (defaults filled in) -> what they differ in: 'architecture' (a network setting),
    'init scale' (only init_scale: one network from two initial scales) or 'training' (anything else)."""
    diff = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} - set(NON_LEARNING_KEYS)
    if diff & set(NETWORK_KEYS):
        return "architecture"
    return "init scale" if diff == {"init_scale"} else "training"


def relation(a: pd.Series, b: pd.Series, architectures: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """What two runs differ in, e.g. 'seed' or 'architecture+labels'. With the runs' ``architectures`` entries, two
    architectures that are one network are named by what they do differ in (``arch_relation``)."""
    diff = [FACTOR_NAMES[k] for k in RUN_KEYS if a[k] != b[k]]
    if architectures and a["arch"] != b["arch"] and a["arch"] in architectures and b["arch"] in architectures:
        name = arch_relation(architectures[a["arch"]], architectures[b["arch"]])
        diff = [name if d == FACTOR_NAMES["arch"] else d for d in diff]
    return "+".join(diff) if diff else "same"


def pairwise_consistency(
    profiles: pd.DataFrame, architectures: Mapping[str, Mapping[str, object]] | None = None
) -> pd.DataFrame:
    """Pearson correlation of every pair of final profiles of the same kind and dimension, with the pair's
    relation (``relation``); plus each run's trained profiles against its own initial profile ('trained vs init')."""
    rows = []
    for kind in ("W", "W-W0"):
        sub = profiles[profiles.kind == kind].reset_index(drop=True)
        for i, j in itertools.combinations(range(len(sub)), 2):
            a, b = sub.loc[i], sub.loc[j]
            if a["kernel_size"] != b["kernel_size"]:
                continue
            rows.append(_pair_row(kind, relation(a, b, architectures), a, b))
        init = {tuple(r[k] for k in RUN_KEYS): r for _, r in profiles[profiles.kind == "W0"].iterrows()}
        for _, a in sub.iterrows():
            b = init.get(tuple(a[k] for k in RUN_KEYS))
            if b is not None:
                rows.append(_pair_row(kind, "trained vs init", a, b))
    return pd.DataFrame(rows)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation: Pearson's of the components' ranks (ties averaged). Every component weighs alike, where
    Pearson's on the energies is dominated by the few largest."""
    return pearson(pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy())


def log_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the log energies: the profiles' shape across orders of magnitude (NaN when either
    has a component of zero energy)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return pearson(np.log(a), np.log(b)) if np.all(a > 0) and np.all(b > 0) else float("nan")


def _pair_row(kind: str, rel: str, a: pd.Series, b: pd.Series) -> dict:
    row = {"kind": kind, "relation": rel, "kernel_size": int(a["kernel_size"])}
    for k in RUN_KEYS:
        row[f"{k}_a"], row[f"{k}_b"] = a[k], b[k]
    row["correlation"] = pearson(a["profile"], b["profile"])
    # beside Pearson's, reported and not judged: the same pair by rank and on a log scale
    row["rank_correlation"] = rank_correlation(a["profile"], b["profile"])
    row["log_correlation"] = log_correlation(a["profile"], b["profile"])
    return row


def bootstrap_mean(
    values: np.ndarray, seeds_a: np.ndarray, seeds_b: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Means of pair values over bootstrap resamples of the seeds: a resample draws the group's seeds with
    replacement and weights each pair by how often its seeds were drawn (m_a * m_b, or m_a for a pair of one seed
    with itself, e.g. trained vs init). Resamples that keep no pair give NaN."""
    seeds = np.unique(np.concatenate([seeds_a, seeds_b]))
    index = {s: i for i, s in enumerate(seeds)}
    ia = np.array([index[s] for s in seeds_a])
    ib = np.array([index[s] for s in seeds_b])
    counts = rng.multinomial(len(seeds), np.full(len(seeds), 1.0 / len(seeds)), size=n_boot)  # (B, S)
    weights = np.where(ia == ib, counts[:, ia], counts[:, ia] * counts[:, ib]).astype(np.float64)  # (B, P)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ values / total, np.nan)


def consistency_summary(
    pairs: pd.DataFrame, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Pairs -> per (kind, relation, architecture where both runs share one): n pairs, n seeds, mean, min, max
    correlation, and a bootstrap confidence interval of the mean over seeds (percentile interval, ``n_boot``
    resamples of the seeds involved; with one seed the interval is the single value); beside them the mean rank and
    log-scale correlations (``rank_mean``, ``log_mean``) where the pairs have them. Pairs annotated by
    ``regime.annotate_pairs`` add the same statistics over their informative pairs only (``informative_n``,
    ``informative_mean``, ``informative_ci_low`` ...; n 0 and NaN where none is) and the mean null r."""
    pairs = pairs.assign(arch=np.where(pairs.arch_a == pairs.arch_b, pairs.arch_a, "(mixed)"))
    rng = np.random.default_rng(seed)
    rows = []
    for (kind, rel, arch), g in pairs.groupby(["kind", "relation", "arch"], sort=True):
        row = {"kind": kind, "relation": rel, "arch": arch, **pair_statistics(g, n_boot, confidence, rng)}
        row |= {f"{name}_mean": _mean_of(g, f"{name}_correlation") for name in ("rank", "log")}
        if "informative" in g:
            judged = g[g["informative"].fillna(False).astype(bool)]
            stats = pair_statistics(judged, n_boot, confidence, rng) if len(judged) else _NO_PAIRS
            row |= {f"informative_{k}": v for k, v in stats.items() if k not in ("confidence", "n_boot")}
            row["null_r"] = float(g["null_r"].mean()) if g["null_r"].notna().any() else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.astype({"informative_n": "int64"}) if "informative_n" in out else out


#: The statistics of a group without a pair: n 0, the rest NaN.
_NO_PAIRS = {"n": 0, "n_seeds": 0, **dict.fromkeys(("mean", "ci_low", "ci_high", "min", "max"), np.nan)}


def pair_statistics(g: pd.DataFrame, n_boot: int, confidence: float, rng: np.random.Generator) -> dict:
    """One group of pairs -> n, n seeds, mean, bootstrap interval over seeds (``bootstrap_mean``), min, max."""
    values = g["correlation"].to_numpy(np.float64)
    boots = bootstrap_mean(values, g["seed_a"].to_numpy(), g["seed_b"].to_numpy(), n_boot, rng)
    lo, hi = np.nanquantile(boots, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {
        "n": len(g), "n_seeds": int(np.unique(np.concatenate([g["seed_a"], g["seed_b"]])).size),
        "mean": float(values.mean()), "ci_low": float(lo), "ci_high": float(hi),
        "confidence": confidence, "n_boot": n_boot, "min": float(values.min()), "max": float(values.max()),
    }  # fmt: skip


def _mean_of(pairs: pd.DataFrame, column: str) -> float:
    """Mean of a pair column over the pairs that have it (NaN when none does, or the column is absent)."""
    values = pairs[column].dropna() if column in pairs else pd.Series(dtype=float)
    return float(values.mean()) if len(values) else float("nan")


# ------------------------------------------------------------------------ matched effective time
# (docs/method.md, Matched effective time)

#: Two snapshots are at matched effective time when their fitted tau are within this distance in ln tau: a factor
#: sqrt(2), within which the formula's own profiles correlate above HIGH across the informative window (a factor 2
#: drops to about 0.81 there, so a mismatch alone could say "no"; docs/method.md, Matched effective time).
MATCHED_TAU_TOLERANCE = float(np.log(np.sqrt(2.0)))


def snapshot_profiles(energy: pd.DataFrame, fits: pd.DataFrame, kind: str = "W-W0") -> pd.DataFrame:
    """Tidy energy and fits -> one row per (run, step > 0) of ``kind`` with its profile as an array and its
    one-parameter tau and at_bound; runs of the learning label modes only (frozen runs have no W - W0)."""
    e = energy[(energy.kind == kind) & (energy.step > 0) & energy["labels"].isin(LEARNING_MODES)]
    f = fits[(fits.kind == kind) & (fits.formula == "one_parameter")][[*RUN_KEYS, "step", "tau", "at_bound"]]
    rows = []
    for keys, g in e.groupby([*RUN_KEYS, "step"], sort=True):
        g = g.sort_values("component")
        rows.append({**dict(zip([*RUN_KEYS, "step"], keys, strict=True)), "kind": kind,
                     "kernel_size": int(g["kernel_size"].iloc[0]), "profile": g["energy"].to_numpy(),
                     **({"filters": int(g["filters"].iloc[0])} if "filters" in g else {})})  # fmt: skip
    return pd.DataFrame(rows).merge(f, on=[*RUN_KEYS, "step"], how="inner")


#: Columns naming a pair of runs (as in the consistency table).
PAIR_KEYS = ["kind", "relation", "kernel_size", *(f"{k}_{side}" for k in RUN_KEYS for side in "ab")]
TAU_DISTANCE_COLUMNS = [*PAIR_KEYS, "step_a", "step_b", "tau_a", "tau_b", "log_tau_distance", "correlation"]


def _run_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs of runs compared at matched tau: W - W0, every relation but 'trained vs init'."""
    return pairs[(pairs.kind == "W-W0") & (pairs.relation != "trained vs init")]


def tau_distance(pairs: pd.DataFrame, snapshots: pd.DataFrame) -> pd.DataFrame:
    """For each pair of runs of ``pairs`` (kind W - W0, not 'trained vs init'): every pair of their snapshots whose
    fit is not at the tau grid's bound, with the two steps, the two tau, |ln tau_a - ln tau_b| and the Pearson
    correlation of the two profiles."""
    free = snapshots[~snapshots["at_bound"].astype(bool)]
    by_run = {key: g.sort_values("step") for key, g in free.groupby(RUN_KEYS, sort=True)}
    frames = []
    for pair in _run_pairs(pairs).to_dict("records"):
        a = by_run.get(tuple(pair[f"{k}_a"] for k in RUN_KEYS))
        b = by_run.get(tuple(pair[f"{k}_b"] for k in RUN_KEYS))
        if a is None or b is None:
            continue
        corr = np.corrcoef(np.stack([*a["profile"], *b["profile"]]))[: len(a), len(a) :]  # (S_a, S_b)
        ia, ib = (i.ravel() for i in np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij"))
        tau_a, tau_b = a["tau"].to_numpy()[ia], b["tau"].to_numpy()[ib]
        frames.append(pd.DataFrame({**{k: pair[k] for k in PAIR_KEYS}, "step_a": a["step"].to_numpy()[ia],
                                    "step_b": b["step"].to_numpy()[ib], "tau_a": tau_a, "tau_b": tau_b,
                                    "log_tau_distance": np.abs(np.log(tau_a) - np.log(tau_b)),
                                    "correlation": corr.ravel()}))  # fmt: skip
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TAU_DISTANCE_COLUMNS)


def matched_tau(pairs: pd.DataFrame, distances: pd.DataFrame, tolerance: float = MATCHED_TAU_TOLERANCE) -> pd.DataFrame:
    """Per pair of runs of ``pairs`` (kind W - W0, not 'trained vs init'): the pair of snapshots of least
    |ln tau_a - ln tau_b| in ``distances`` (ties: the later steps), its correlation, and ``matched`` when that
    distance is at most ``tolerance``; beside it the final-step correlation of ``pairs``. A pair of runs with no
    snapshot off the tau grid's bound on one side keeps NaN steps and tau and is not matched."""
    final = _run_pairs(pairs)[[*PAIR_KEYS, "correlation"]].rename(columns={"correlation": "correlation_final"})
    later = -(distances["step_a"] + distances["step_b"])
    nearest = distances.assign(_later=later).sort_values(["log_tau_distance", "_later"], kind="stable")
    nearest = nearest.drop_duplicates(PAIR_KEYS).drop(columns="_later")
    out = final.merge(nearest, on=PAIR_KEYS, how="left")
    out["matched"] = out["log_tau_distance"].le(tolerance)
    return out.reset_index(drop=True)


def matched_tau_summary(
    matched: pd.DataFrame, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Matched pairs -> per (kind, relation, architecture) as consistency_summary, over the matched pairs only, with
    the number of pairs of runs in the group (``n_pairs``, matched or not) and the median |ln tau_a - ln tau_b| of
    the matched ones; a group without a matched pair has n = 0 and NaN statistics."""
    keys = ["kind", "relation", "arch"]
    arch = np.where(matched.arch_a == matched.arch_b, matched.arch_a, "(mixed)")
    m = matched.assign(arch=arch, _distance=matched["log_tau_distance"].where(matched["matched"]))
    counts = m.groupby(keys, sort=True).agg(
        n_pairs=("matched", "size"), median_log_tau_distance=("_distance", "median")
    )
    hit = m[m["matched"]]
    stats = ["n", "n_seeds", "mean", "ci_low", "ci_high", "confidence", "n_boot", "min", "max"]
    summary = (
        consistency_summary(hit, n_boot=n_boot, confidence=confidence, seed=seed).set_index(keys)
        if len(hit)
        else pd.DataFrame(columns=[*keys, *stats]).set_index(keys)
    )
    out = counts.join(summary, how="left").reset_index()
    return out.astype({"n": "Int64", "n_seeds": "Int64", "n_boot": "Int64"}).fillna({"n": 0})


def profile_contrast(profiles: pd.DataFrame) -> pd.DataFrame:
    """How far from flat each profile is: coefficient of variation (std / mean) and max / min over components."""
    out = profiles[[*RUN_KEYS, "kind", "step", "kernel_size"]].copy()
    out["coefficient_of_variation"] = [float(np.std(p) / np.mean(p)) for p in profiles["profile"]]
    out["max_over_min"] = [float(np.max(p) / max(np.min(p), 1e-300)) for p in profiles["profile"]]
    return out


# ------------------------------------------------------------------------ whitening (docs/method.md, Whitening)

#: Relative eigenvalue tolerance of the data's span: components with eigenvalue below RANK_TOLERANCE x the
#: largest are outside it. Rounding in a float64 covariance and eigh leaves a zero direction at ~d·eps ≈ 1e-16 to
#: 1e-13 of the largest (d ≤ a few hundred); 1e-10 clears that by ≥ 1000x and stays 1e5x below the photos' smallest
#: genuine eigenvalue (~1e-5 of the largest).
RANK_TOLERANCE = 1e-10
#: Fewest spanned components for a flatness to say anything: over one component it is 1 whatever the filters.
MIN_RANK = 2


def data_span(eigenvalues: np.ndarray, tol: float = RANK_TOLERANCE) -> np.ndarray:
    """Boolean mask of the components inside the data's span: eigenvalue >= tol x the largest, and above 0
    (all False when the patches have no variance or the eigenvalues are not finite)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.size == 0 or not np.all(np.isfinite(lam)) or lam.max() <= 0:
        return np.zeros(lam.shape, dtype=bool)
    return lam >= tol * lam.max()


def flatness_detail(energy: np.ndarray, eigenvalues: np.ndarray, tol: float = RANK_TOLERANCE) -> dict:
    """Response flatness over the data's span, with how it was measured: flatness (NaN when not applicable),
    components (all of the profile), rank (those in the span, the ones used), applicable and reason ('' if so)."""
    e = np.asarray(energy, dtype=np.float64)
    lam = np.asarray(eigenvalues, dtype=np.float64)
    span = data_span(lam, tol)
    rank, d = int(span.sum()), int(lam.size)

    def out(flatness: float, reason: str = "") -> dict:
        return {"flatness": flatness, "components": d, "rank": rank, "applicable": not reason, "reason": reason}

    if not np.all(np.isfinite(lam)):
        return out(np.nan, "non-finite eigenvalues")
    if rank == 0:
        return out(np.nan, f"the patches have no variance (0 of {d} components)")
    if rank < MIN_RANK:
        return out(np.nan, f"the patches span {rank} of {d} components (fewer than {MIN_RANK}): nothing to judge")
    r2 = e[span] ** 2 * lam[span]
    if not np.all(np.isfinite(r2)):
        return out(np.nan, "non-finite energy in the data's span")
    if np.all(r2 == 0):
        return out(np.nan, "the filters have no energy in the data's span")
    if np.any(r2 == 0):
        return out(0.0)  # a spanned direction the bank ignores: the response is as far from white as it gets
    return out(float(np.exp(np.mean(np.log(r2))) / np.mean(r2)))


def response_flatness(energy: np.ndarray, eigenvalues: np.ndarray) -> float:
    """Flatness of the response profile r_i = e_i * sigma_i over the data's span (eigenvalue >= RANK_TOLERANCE x
    the largest): geometric over arithmetic mean of r_i^2 (1 = white); NaN where not applicable (see
    ``flatness_detail``)."""
    return flatness_detail(energy, eigenvalues)["flatness"]


def whitening_frame(energy: pd.DataFrame, keys: Sequence[str] = WHITENING_KEYS) -> pd.DataFrame:
    """Tidy energy -> response flatness per bank (rows grouped by ``keys``): of the data alone (a flat e, so
    r_i^2 = lambda_i; stage 'data'), of W0 (stage 'init', step 0) and of W at every later snapshot (stage
    'trained'), with 'final' marking the last step; each row with components, rank, applicable and reason."""
    rows = []
    keys = list(keys)
    w = energy[energy["kind"] == "W"]
    for values, g in w.groupby(keys, sort=True):
        base = dict(zip(keys, values, strict=True))
        last = g["step"].max()
        first = True
        for step, s in g.groupby("step", sort=True):
            s = s.sort_values("component")
            lam = s["eigenvalue"].to_numpy()
            if first:
                rows.append({**base, "stage": "data", "step": -1, "final": False,
                             **flatness_detail(np.ones_like(lam), lam)})  # fmt: skip
                first = False
            rows.append({**base, "stage": "init" if step == 0 else "trained", "step": int(step),
                         "final": bool(step == last), **flatness_detail(s["energy"].to_numpy(), lam)})  # fmt: skip
    return pd.DataFrame(rows)


def _applicable(whitening: pd.DataFrame) -> pd.Series:
    """Rows whose flatness is defined (tables without an 'applicable' column: those with a finite flatness)."""
    ok = whitening["flatness"].notna()
    if "applicable" in whitening:
        ok &= whitening["applicable"].astype(bool)
    return ok


def whitening_summary(whitening: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, arch, labels): flatness of the data, of W0 and of the final W (means over the seeds where it is
    applicable), the fraction of runs whose final W is flatter than their W0, components and rank (the fewest
    over runs); not applicable, with the reason, when no run has both an applicable W0 and final W."""
    rows = []
    for (dataset, arch, labels), g in whitening.groupby(["dataset", "arch", "labels"], sort=True):
        ok = _applicable(g)
        judged = g[ok]
        init = judged[judged.stage == "init"].set_index("seed")["flatness"]
        final = judged[(judged.stage == "trained") & judged.final].set_index("seed")["flatness"]
        common = init.index.intersection(final.index)
        reasons = sorted(set(g.loc[~ok, "reason"]) - {""}) if "reason" in g else []
        if not len(common):
            reasons = reasons or ["no run has both an initial and a final W"]
        elif reasons:
            runs = g.loc[~ok, "seed"].nunique()
            reasons = [f"{runs} of {g['seed'].nunique()} runs not applicable: {'; '.join(reasons)}"]
        rows.append({
            "dataset": dataset, "arch": arch, "labels": labels, "n_seeds": len(common),
            "data": float(judged[judged.stage == "data"]["flatness"].mean()), "init": float(init.mean()),
            "trained": float(final.mean()),
            "fraction_flatter_than_init": float((final[common] > init[common]).mean()) if len(common) else np.nan,
            "components": int(g["components"].max()) if "components" in g else np.nan,
            "rank": int(g["rank"].min()) if "rank" in g else np.nan,
            "applicable": bool(len(common)), "reason": "; ".join(reasons),
        })  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ label information


def class_mean_patches(
    images: np.ndarray, labels: np.ndarray, kernel_size: int, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, c, h, w) uint8 images and (n,) labels -> (classes,), (classes, d) mean patch of each class (over all its
    images and positions, normalised like the network input) and (classes,) image counts. A mean patch is the
    window average of the class's mean image, so no patch is unfolded."""
    import torch

    from firstlayer.patches import normalise, unfold_patches

    classes = np.unique(labels)
    out, counts = [], []
    for c in classes:
        sel = images[labels == c]
        mean_image = torch.from_numpy(sel.astype(np.float64).mean(axis=0)).to(torch.float64)[None]  # (1, c, h, w)
        x = normalise(mean_image, torch.as_tensor(mean), torch.as_tensor(std), torch.float64)
        out.append(unfold_patches(x, kernel_size).mean(0).numpy())
        counts.append(len(sel))
    return classes, np.stack(out), np.asarray(counts)


def label_information(
    images: np.ndarray,
    labels: np.ndarray,
    kernel_size: int,
    mean: np.ndarray,
    std: np.ndarray,
    eigenvalues: np.ndarray,
    basis: np.ndarray,
) -> pd.DataFrame:
    """How much first-order patch information the labels carry, per PCA component i: the spread of the class-mean
    patches along u_i (between-class variance, classes weighted by their image counts) relative to the patch
    variance lambda_i along it. 0 = class means identical (the linear theory's assumption for true = random
    labels); 1 = all patch variance along u_i is between classes."""
    _, means, counts = class_mean_patches(images, labels, kernel_size, mean, std)
    w = counts / counts.sum()
    centred = means - w @ means
    between = w @ (centred @ basis) ** 2  # (d,)
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return pd.DataFrame({
        "component": np.arange(1, len(lam) + 1), "eigenvalue": lam, "between_class_variance": between,
        "ratio": between / np.maximum(lam, lam.max() * 1e-12),
    })  # fmt: skip


def label_information_summary(info: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, kernel size): the share of all patch variance that lies between class means, and the largest
    per-component ratio with its component."""
    rows = []
    for (dataset, k), g in info.groupby(["dataset", "kernel_size"], sort=True):
        top = g.loc[g["ratio"].idxmax()]
        rows.append({
            "dataset": dataset, "kernel_size": int(k),
            "between_class_share": float(g["between_class_variance"].sum() / g["eigenvalue"].sum()),
            "max_ratio": float(top["ratio"]), "max_ratio_component": int(top["component"]),
        })  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ accuracy and the frozen control


def final_accuracy(metrics: pd.DataFrame, chance: dict[str, float] | None = None) -> pd.DataFrame:
    """Tidy metrics -> per (dataset, arch, labels): train and held-out test accuracy at each run's last step,
    mean and standard deviation over seeds, and the dataset's chance level (``chance_accuracy``; NaN when not
    given)."""
    acc = metrics[metrics["metric"].isin(["train_accuracy", "test_accuracy"])]
    final = acc[last_step(acc)].pivot_table(index=RUN_KEYS, columns="metric", values="value").reset_index()
    out = final.groupby(["dataset", "arch", "labels"], sort=True).agg(
        n_seeds=("seed", "nunique"),
        train_accuracy=("train_accuracy", "mean"),
        test_accuracy=("test_accuracy", "mean"),
        test_accuracy_std=("test_accuracy", "std"),
    )
    if "precision" in metrics:  # what the runs computed in above the first layer; "a+b" when they differ
        out["precision"] = metrics.groupby(["dataset", "arch", "labels"], sort=True)["precision"].agg(_joined)
    out = out.reset_index()
    out["chance"] = out["dataset"].map(chance or {}).astype(float)
    return out


def _joined(values: pd.Series) -> str:
    return "+".join(sorted(set(values)))


def precision_warnings(metrics: pd.DataFrame) -> list[str]:
    """One message per architecture entry whose runs did not all compute in the same precision (``training.precision:
    auto`` on nodes that differ in bfloat16 support): their seeds and label modes are then compared across
    arithmetic. Metrics without a ``precision`` column give none."""
    if "precision" not in metrics:
        return []
    used = metrics.groupby("arch", sort=True)["precision"].agg(lambda v: sorted(set(v)))
    return [
        f"architecture {arch!r} ran in {' and '.join(p)} in different jobs (training.precision: auto on machines "
        f"that differ in bfloat16 support); set training.precision to float32 or bfloat16 to compare like with like"
        for arch, p in used.items()
        if len(p) > 1
    ]


def chance_accuracy(manifest: pd.DataFrame) -> float:
    """Test accuracy of always answering the most frequent test class (a dataset's chance level)."""
    test = manifest.loc[manifest["split"] == "test", "label"]
    return float(test.value_counts(normalize=True).max())


def frozen_accuracy(metrics: pd.DataFrame, chance: dict[str, float] | None = None) -> pd.DataFrame:
    """Per (dataset, arch) that has both: test accuracy with the whole network trained (true labels) and with the
    first layer frozen at its random init, the difference (frozen - trained), and the dataset's chance level
    (``chance_accuracy``; NaN when not given): the comparison says something only where training beat chance."""
    columns = ["dataset", "arch", "test_accuracy_trained", "test_accuracy_frozen", "difference", "chance"]
    acc = final_accuracy(metrics)
    wide = acc.pivot_table(index=["dataset", "arch"], columns="labels", values="test_accuracy")
    if "frozen" not in wide or "true" not in wide:
        return pd.DataFrame(columns=columns)
    out = (
        wide[["true", "frozen"]]
        .dropna()
        .rename(columns={"true": "test_accuracy_trained", "frozen": "test_accuracy_frozen"})
    )
    out["difference"] = out["test_accuracy_frozen"] - out["test_accuracy_trained"]
    out.columns.name = None
    out = out.reset_index()
    out["chance"] = out["dataset"].map(chance or {}).astype(float)
    return out[columns]
