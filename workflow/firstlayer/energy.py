"""Energy profiles: per-component norm of a filter bank in the patch PCA basis (docs/method.md, The energy profile)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: Profile kinds: the trained weights, and their change from initialisation.
KINDS = ("W", "W-W0")


def energy_profile(filters: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(K, d) filters and (d, d) eigenvectors as columns -> (d,) energy e_i = sqrt(mean_k (w_k . u_i)^2)."""
    filters = np.asarray(filters, dtype=np.float64)
    if filters.ndim != 2 or filters.shape[1] != basis.shape[0]:
        raise ValueError(f"filters {filters.shape} do not match a basis of dimension {basis.shape[0]}")
    proj = filters @ basis
    return np.sqrt(np.mean(proj**2, axis=0))


def energy_frame(snapshots: Mapping[int, np.ndarray], eigenvalues: np.ndarray, basis: np.ndarray) -> pd.DataFrame:
    """{step: (K, d)} -> tidy rows (step, kind, component, eigenvalue, energy) for W at every step and for
    W - W0 at every step after the first (step 0 must be present: it is W0)."""
    if 0 not in snapshots:
        raise ValueError("snapshots need step 0 (the initial weights) to measure W - W0")
    w0 = snapshots[0]
    d = basis.shape[0]
    frames = []
    for step, w in sorted(snapshots.items()):
        for kind, bank in (("W", w), ("W-W0", w - w0)):
            if kind == "W-W0" and step == 0:
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "step": step,
                        "kind": kind,
                        "component": np.arange(1, d + 1),
                        "eigenvalue": eigenvalues,
                        "energy": energy_profile(bank, basis),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def snapshot_arrays(frame: pd.DataFrame) -> dict[int, np.ndarray]:
    """Tidy snapshot rows (step, filter, position, weight) -> {step: (K, d) float64 filter bank}."""
    out = {}
    for step, g in frame.groupby("step", sort=True):
        g = g.sort_values(["filter", "position"])
        k, d = g["filter"].nunique(), g["position"].nunique()
        out[int(step)] = g["weight"].to_numpy(np.float64).reshape(k, d)
    return out


def pca_basis(pca: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Tidy PCA table -> eigenvalues (d,) and eigenvectors (d, d) as columns, ordered by component."""
    pca = pca.sort_values("component")
    return pca["eigenvalue"].to_numpy(np.float64), np.stack(pca["eigenvector"].to_numpy()).T.astype(np.float64)
