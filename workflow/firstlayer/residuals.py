"""Where nonlinear networks leave the formula: the per-component residual of each run's final W - W0 profile against
its one-parameter fit (both at unit norm), and whether the large residuals fall on the components that carry label
information of first or second order, against a permutation null (docs/method.md, Where nonlinear networks leave
the formula: the statistic, its null and their limits, fixed before any measured result was looked at)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from firstlayer.analysis import LEARNING_MODES, RUN_KEYS, last_step
from firstlayer.io import PROVENANCE
from firstlayer.theory import formula_profile

#: The profile kind and the fit the residual is taken against.
KIND = "W-W0"
FORMULA = "one_parameter"
#: The label information orders, by their column prefix in the label-information table.
ORDERS = ("first_order", "second_order")
#: Informative components whose share of the squared residual is reported.
TOP = 3
#: Permutations of the null, and its seed.
PERMUTATIONS = 1000
NULL_SEED = 0
#: Fewest components with label information for the statistics (fewer: NaN and a reason).
MIN_COMPONENTS = 2 * TOP
#: Relative tolerance of the eigenvalue check between a profile's PCA and its label information's.
EIGENVALUE_RTOL = 1e-4
#: Columns that identify a profile beside RUN_KEYS, where the tables have them.
PROFILE_KEYS = ("model", "kernel_size", "normalisation")
#: Group of runs summarised together.
GROUP_KEYS = ["dataset", "arch", "labels"]

INFORMATION_COLUMNS = [f"{o}{suffix}" for o in ORDERS for suffix in ("", "_excess")]


def unit(x: np.ndarray) -> np.ndarray:
    """x / |x| (Euclidean, not centred); NaN for an all-zero or non-finite vector."""
    x = np.asarray(x, dtype=np.float64)
    norm = float(np.linalg.norm(x))
    return x / norm if np.isfinite(norm) and norm > 0 else np.full_like(x, np.nan)


def _information(label_info: pd.DataFrame) -> pd.DataFrame:
    cols = ["dataset", "kernel_size", "component", "eigenvalue", "kept", *INFORMATION_COLUMNS]
    return label_info[cols].rename(columns={"eigenvalue": "information_eigenvalue"})


def _attach_information(run: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """One run's rows (sorted by component) with its dataset's label information per component, or NaN and a
    reason where there is none."""
    dataset, k = run["dataset"].iloc[0], int(run["kernel_size"].iloc[0])
    here = info[(info["dataset"] == dataset) & (info["kernel_size"] == k)].drop(columns=["dataset", "kernel_size"])
    run = run.merge(here, on="component", how="left")
    reason = pd.Series("", index=run.index)
    present = run["information_eigenvalue"].notna()
    same = np.isclose(run["information_eigenvalue"], run["eigenvalue"], rtol=EIGENVALUE_RTOL, atol=0.0)
    if here.empty:
        reason[:] = f"no label information for {dataset} at kernel size {k}"
    elif not same[present.to_numpy()].all():
        reason[:] = f"the label information of {dataset} at kernel size {k} is of another PCA (eigenvalues differ)"
    else:
        reason[~present] = "no label information for this component"
        reason[present & ~run["kept"].astype("boolean").fillna(False)] = (
            "component not kept by the label-information whitening"
        )
    run.loc[reason != "", INFORMATION_COLUMNS] = np.nan
    return run.drop(columns=["information_eigenvalue", "kept"]).assign(reason=reason)


def residual_frame(energy: pd.DataFrame, fits: pd.DataFrame, label_info: pd.DataFrame) -> pd.DataFrame:
    """Tidy energy, fits and Gaussian label information -> one row per (run, component) at each run's last step,
    kind W - W0, runs of LEARNING_MODES: the measured energy, the fit's tau and correlation, ``measured`` and
    ``fitted`` (the profile and the one-parameter formula at the fitted tau, each scaled to unit Euclidean norm, so
    residuals are comparable across runs), ``residual = measured - fitted`` (its sum of squares is 2 (1 - cosine)),
    the component's label information of both orders and its excess over the null (``first_order``,
    ``first_order_excess``, ``second_order``, ``second_order_excess``), and ``reason`` (why a value is NaN; empty
    when none is)."""
    e = energy[(energy["kind"] == KIND) & energy["labels"].isin(LEARNING_MODES)]
    e = e[last_step(e)].drop(columns=[c for c in PROVENANCE if c in e])
    keys = [*RUN_KEYS, *(c for c in PROFILE_KEYS if c in e and c in fits), "step", "kind"]
    f = fits[(fits["formula"] == FORMULA) & (fits["kind"] == KIND)][[*keys, "tau", "correlation", "at_bound"]]
    if f.duplicated(keys).any():
        raise ValueError(f"fits holds several {FORMULA} fits of one profile (keys {keys})")
    e = e.merge(f, on=keys, how="left", validate="many_to_one")
    info = _information(label_info)
    out = []
    for _, run in e.groupby(RUN_KEYS, sort=True):
        run = run.sort_values("component").reset_index(drop=True)
        measured = unit(run["energy"].to_numpy())
        tau = float(run["tau"].iloc[0])
        fitted = unit(formula_profile(run["eigenvalue"].to_numpy(), tau)) if np.isfinite(tau) else measured * np.nan
        run = _attach_information(run.assign(measured=measured, fitted=fitted, residual=measured - fitted), info)
        missing = "no one-parameter fit of this profile" if not np.isfinite(tau) else ""
        if not np.isfinite(measured).all() and not missing:
            missing = "the profile is zero"
        if missing:
            run["reason"] = [f"{missing}; {r}" if r else missing for r in run["reason"]]
        out.append(run)
    if not out:
        return pd.DataFrame(columns=[*e.columns, "measured", "fitted", "residual", *INFORMATION_COLUMNS, "reason"])
    return pd.concat(out, ignore_index=True)


# ------------------------------------------------------------------------ the concentration statistic and its null


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (ties averaged), centred and scaled to unit norm: a dot product of two is Spearman's correlation."""
    r = pd.Series(x).rank().to_numpy(np.float64)
    r = r - r.mean()
    norm = np.linalg.norm(r)
    return r / norm if norm > 0 else r


def _p_value(null: np.ndarray, observed: float) -> float:
    """One-sided permutation p-value, counting the observed statistic as one draw (ties within 1e-12 count)."""
    at_least = (null >= observed) | np.isclose(null, observed, rtol=1e-12, atol=1e-15)
    return float((1 + at_least.sum()) / (1 + null.size))


@dataclass(frozen=True)
class Concentration:
    """How much of a per-component weight ``q`` (squared residual) falls on the components of large ``x`` (label
    information): Spearman's correlation and the top-``top`` share, each with its permutation null."""

    spearman: float
    spearman_p: float
    weighted: float
    weighted_null_mean: float
    weighted_p: float
    top: np.ndarray  # indices (into q and x) of the top components of x, largest first
    top_share: float
    top_share_null_mean: float
    top_share_null_q95: float
    top_share_p: float


def concentration(
    q: np.ndarray, x: np.ndarray, *, top: int = TOP, permutations: int = PERMUTATIONS, seed: int = NULL_SEED
) -> Concentration:
    """The statistic of the module docstring for weights q >= 0 and information x over the same components (all
    finite): Spearman(q, x), the q-weighted mean of x and the share of sum q on the ``top`` components of largest x,
    against ``permutations`` permutations of x drawn by ``numpy.random.default_rng(seed)``."""
    q, x = np.asarray(q, dtype=np.float64), np.asarray(x, dtype=np.float64)
    if q.shape != x.shape or q.ndim != 1 or not (np.isfinite(q).all() and np.isfinite(x).all()):
        raise ValueError("q and x must be finite vectors of one length")
    if q.size <= top:
        raise ValueError(f"{q.size} components: the top-{top} share needs more")
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(np.arange(q.size), (permutations, 1)), axis=1)  # (P, n)
    rq, rx = _ranks(q), _ranks(x)
    spearman = float(rx @ rq)
    spearman_null = rx[perms] @ rq  # ranks of a permuted x are the permuted ranks
    best = np.argsort(-x, kind="stable")[:top]
    total = float(q.sum())
    if total <= 0:
        nan = float("nan")
        return Concentration(spearman, nan, nan, nan, nan, best, nan, nan, nan, nan)
    weighted = float(q @ x / total)
    weighted_null = x[perms] @ q / total
    share = float(q[best].sum() / total)
    null_best = np.argsort(-x[perms], axis=1, kind="stable")[:, :top]  # (P, top) positions of the permuted top
    null_share = q[null_best].sum(axis=1) / total
    return Concentration(
        spearman=spearman,
        spearman_p=_p_value(spearman_null, spearman),
        weighted=weighted,
        weighted_null_mean=float(weighted_null.mean()),
        weighted_p=_p_value(weighted_null, weighted),
        top=best,
        top_share=share,
        top_share_null_mean=float(null_share.mean()),
        top_share_null_q95=float(np.quantile(null_share, 0.95)),
        top_share_p=_p_value(null_share, share),
    )


def _components(values: np.ndarray) -> str:
    return ",".join(str(int(v)) for v in values)


def _statistics(rows: pd.DataFrame, q: np.ndarray, signed: np.ndarray, permutations: int, seed: int) -> dict:
    """Statistic columns of one run or group: ``rows`` are its components (one run's, sorted), q the weights, signed
    the residuals (runs x components) whose mean on the top informative components is reported."""
    component = rows["component"].to_numpy()
    out: dict = {"components": int(component.size)}
    finite = np.isfinite(q)
    order = np.argsort(-np.where(finite, q, -np.inf), kind="stable")[:TOP]
    out["top_residual_components"] = _components(component[order]) if finite.any() else ""
    eigenvalue = rows["eigenvalue"].to_numpy()
    out["spearman_eigenvalue"] = float(_ranks(q[finite]) @ _ranks(eigenvalue[finite])) if finite.sum() > 1 else np.nan
    usable = finite.copy()
    for o in ORDERS:
        usable &= np.isfinite(rows[f"{o}_excess"].to_numpy(np.float64))
    out["components_with_information"] = int(usable.sum())
    reasons = sorted(set(rows["reason"]) - {""})
    enough = usable.sum() >= MIN_COMPONENTS
    for o in ORDERS:
        stats = dict.fromkeys(["spearman", "spearman_p", "weighted", "weighted_null_mean", "weighted_p", "top_share",
                               "top_share_null_mean", "top_share_null_q95", "top_share_p", "top_residual_mean"],
                              np.nan)  # fmt: skip
        top = ""
        if enough:
            x = rows[f"{o}_excess"].to_numpy()[usable]
            c = concentration(q[usable], x, permutations=permutations, seed=seed)
            stats.update({k: getattr(c, k) for k in stats if hasattr(c, k)})
            where = np.flatnonzero(usable)[c.top]
            stats["top_residual_mean"] = float(np.nanmean(signed[:, where]))
            top = _components(component[where])
        out.update({f"{o}_{k}": v for k, v in stats.items()})
        out[f"{o}_top_components"] = top
    if not enough:
        reasons.append(f"{int(usable.sum())} components with a residual and label information (need "
                       f"{MIN_COMPONENTS})")  # fmt: skip
    out["reason"] = "; ".join(dict.fromkeys(reasons)) if not enough else ""
    return out


def residual_summary(frame: pd.DataFrame, *, permutations: int = PERMUTATIONS, seed: int = NULL_SEED) -> pd.DataFrame:
    """residual_frame -> one row per run (``level = run``) and one per (dataset, arch, labels) (``level = group``,
    seed and step NA, its runs' squared residuals averaged per component): ``runs``, fit correlation (mean over
    runs), ``cosine`` of the measured profile and the fitted formula and ``residual_norm`` (means over runs for a
    group), ``top_residual_components``, ``spearman_eigenvalue``, and per order (``first_order_``,
    ``second_order_``) the Spearman correlation of the squared residual with the information excess and its
    permutation p-value, the residual-weighted information (``weighted``) with the null's mean and p-value, the top-3
    informative components, their share of the squared residual with the null's mean, 95th percentile and p-value,
    and the mean signed residual on them; ``reason`` when a statistic is NaN. The statistic and its null: the module
    docstring."""
    keys = [*RUN_KEYS, *(c for c in ("model", "kernel_size") if c in frame)]
    rows = []
    runs = {k: g.sort_values("component") for k, g in frame.groupby(keys, sort=True)}
    for key, g in runs.items():
        r = g["residual"].to_numpy()
        rows.append({**dict(zip(keys, key, strict=True)), "level": "run", "step": int(g["step"].iloc[0]), "runs": 1,
                     "fit_correlation": float(g["correlation"].iloc[0]),
                     "cosine": float(g["measured"] @ g["fitted"]), "residual_norm": float(np.linalg.norm(r)),
                     **_statistics(g, r**2, r[None, :], permutations, seed)})  # fmt: skip
    per_run = pd.DataFrame(rows)
    group_keys = [c for c in keys if c != "seed"]
    for key, g in frame.groupby(group_keys, sort=True):
        wide = g.pivot_table(index="seed", columns="component", values="residual", aggfunc="first", dropna=False)
        first = g[g["seed"] == g["seed"].min()].sort_values("component").set_index("component").loc[wide.columns]
        first = first.reset_index()
        signed = wide.to_numpy()
        runs_here = per_run.loc[(per_run[group_keys] == pd.Series(key, index=group_keys)).all(axis=1)]
        rows.append({**dict(zip(group_keys, key, strict=True)), "level": "group", "runs": len(wide),
                     "fit_correlation": float(runs_here["fit_correlation"].mean()),
                     "cosine": float(runs_here["cosine"].mean()),
                     "residual_norm": float(runs_here["residual_norm"].mean()),
                     **_statistics(first, np.mean(signed**2, axis=0), signed, permutations, seed)})  # fmt: skip
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["seed"] = out["seed"].astype("Int64")
    out["step"] = out["step"].astype("Int64")
    out["permutations"], out["null_seed"] = permutations, seed
    front = ["level", *keys, "step", "runs"]
    return out[front + [c for c in out.columns if c not in front]]
