"""Energy profiles: per-component norm of a filter bank in the patch PCA basis, and the one path from first-layer
weights to the energy, fits and whitening tables that the workflow's runs, pretrained checkpoints and
``firstlayer.analyze`` share (docs/method.md: The energy profile, Fitting the formula, Whitening)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from firstlayer.analysis import WHITENING_KEYS, whitening_frame
from firstlayer.theory import fit_frame

#: Profile kinds: the trained weights, and their change from initialisation.
KINDS = ("W", "W-W0")
#: The step of a bank whose training is not counted (a pretrained checkpoint, the API's weights): any step after
#: 0 marks trained weights; step 0 is always the init.
TRAINED_STEP = 1
#: ``normalisation`` of a profile whose patches are normalised by the dataset's own channel mean and std.
DATASET_NORMALISATION = "dataset"


def energy_profile(filters: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(K, d) filters and (d, d) eigenvectors as columns -> (d,) energy e_i = sqrt(mean_k (w_k . u_i)^2)."""
    filters = np.asarray(filters, dtype=np.float64)
    if filters.ndim != 2 or filters.shape[1] != basis.shape[0]:
        raise ValueError(f"filters {filters.shape} do not match a basis of dimension {basis.shape[0]}")
    proj = filters @ basis
    return np.sqrt(np.mean(proj**2, axis=0))


def energy_frame(
    snapshots: Mapping[int, np.ndarray], eigenvalues: np.ndarray, basis: np.ndarray, *, kinds: Sequence[str] = KINDS
) -> pd.DataFrame:
    """{step: (K, d) or (K, c, k, k)} -> tidy rows (step, kind, component, eigenvalue, energy, filters = K): W at
    every step and, when ``kinds`` has it, W - W0 at every step after the first (then step 0 must be present: it
    is W0)."""
    if unknown := set(kinds) - set(KINDS):
        raise ValueError(f"unknown profile kinds {sorted(unknown)}; allowed: {', '.join(KINDS)}")
    if "W-W0" in kinds and 0 not in snapshots:
        raise ValueError("snapshots need step 0 (the initial weights) to measure W - W0")
    banks = {step: np.asarray(w, dtype=np.float64).reshape(len(w), -1) for step, w in snapshots.items()}
    d = basis.shape[0]
    frames = []
    for step, w in sorted(banks.items()):
        for kind, bank in (("W", w), ("W-W0", w - banks[0] if "W-W0" in kinds and step != 0 else None)):
            if kind not in kinds or bank is None:
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "step": step,
                        "kind": kind,
                        "component": np.arange(1, d + 1),
                        "eigenvalue": eigenvalues,
                        "energy": energy_profile(bank, basis),
                        "filters": len(bank),  # the bank's width: the random-bank null of regime.py is per width
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def energy_table(
    snapshots: Mapping[int, np.ndarray],
    eigenvalues: np.ndarray,
    basis: np.ndarray,
    keys: Mapping[str, Any],
    *,
    kinds: Sequence[str] = KINDS,
    normalisation: str = DATASET_NORMALISATION,
) -> pd.DataFrame:
    """One bank's energy table: ``energy_frame`` with the columns of ``keys`` (its run or model, the kernel size)
    and ``normalisation`` (which input normalisation the PCA is of: profiles are fitted per normalisation)."""
    return energy_frame(snapshots, eigenvalues, basis, kinds=kinds).assign(**keys, normalisation=normalisation)


class ProfileTables(NamedTuple):
    """The three tables of a profile: tidy energy, formula fits (``theory.fit_frame``) and response flatness
    (``analysis.whitening_frame``)."""

    energy: pd.DataFrame
    fits: pd.DataFrame
    whitening: pd.DataFrame


def profile_tables(
    snapshots: Mapping[int, np.ndarray],
    eigenvalues: np.ndarray,
    basis: np.ndarray,
    keys: Mapping[str, Any],
    *,
    kinds: Sequence[str] = KINDS,
    normalisation: str = DATASET_NORMALISATION,
    whitening_keys: Sequence[str] = WHITENING_KEYS,
    fit: Mapping[str, Any] | None = None,
) -> ProfileTables:
    """First-layer snapshots {step: bank} and the PCA (eigenvalues, eigenvectors as columns) -> energy, fits and
    whitening tables. The workflow builds the same three from its collected energy tables with the same
    functions (its fit and whitening jobs call ``fit_frame`` and ``whitening_frame`` on all runs at once)."""
    energy = energy_table(snapshots, eigenvalues, basis, keys, kinds=kinds, normalisation=normalisation)
    return ProfileTables(energy, fit_frame(energy, **(fit or {})), whitening_frame(energy, keys=whitening_keys))


def snapshot_arrays(frame: pd.DataFrame) -> dict[int, np.ndarray]:
    """Tidy snapshot rows (step, filter, position, weight) -> {step: (K, d) float64 filter bank}."""
    out = {}
    for step, g in frame.groupby("step", sort=True):
        g = g.sort_values(["filter", "position"])
        k, d = g["filter"].nunique(), g["position"].nunique()
        out[int(step)] = g["weight"].to_numpy(np.float64).reshape(k, d)
    return out
