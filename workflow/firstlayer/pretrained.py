"""First-layer energy profiles of pretrained torchvision ImageNet models, in the PCA basis of the dataset's patches
normalised as the model's first layer sees them (docs/method.md, The energy profile). Nothing is downloaded: the
checkpoint comes from a configured path or torchvision's hub cache; the network is built from it as its weights
configure it, to find what normalisation its first layer sees (``input_normalisation``). The profile joins the
trained runs' energy table (labels 'pretrained', one W), so the workflow's fit and whitening jobs take it too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from firstlayer.analysis import PRETRAINED
from firstlayer.checkpoints import CheckpointError, read_checkpoint, weight_key
from firstlayer.energy import TRAINED_STEP, energy_table
from firstlayer.modelspec import (
    first_layer_weight,
    input_transform,
    torchvision_weights,
    weights_model,
    weights_normalisation,
)
from firstlayer.modelspec import hub_checkpoint as hub_checkpoint_of
from firstlayer.patches import PatchMoments, normalise_moments, patch_pca

#: Columns of the status table (one row per model: where its checkpoint is and whether it was profiled).
STATUS_COLUMNS = ("model", "weights", "dataset", "kernel_size", "checkpoint", "status")
#: The ``seed`` of a pretrained profile in the energy table (one checkpoint, no seeds).
PRETRAINED_SEED = 0


def hub_checkpoint(name: str, weights: str) -> Path:
    """Where torchvision stores the checkpoint of these weights once downloaded (nothing is downloaded here)."""
    return hub_checkpoint_of(torchvision_weights(name, weights))


def checkpoint_path(name: str, weights: str, path: str | Path | None = None) -> Path:
    """The checkpoint file to read: `path` when configured, else torchvision's hub-cache file for the weights."""
    return Path(path).expanduser() if path else hub_checkpoint(name, weights)


def input_normalisation(name: str, weights: str, checkpoint: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (in [0, 1] pixel units) of the patches the first layer of `name` sees with these
    weights: their own preprocessing (ImageNet's), composed with any per-channel affine map the network applies to
    its input before that layer (GoogLeNet's and Inception-v3's transform_input), found by running the network as
    the weights configure it, with the tensors of `checkpoint` (default: torch.hub's cache file)."""
    entry = torchvision_weights(name, weights)
    mean, std = weights_normalisation(entry)
    path = checkpoint_path(name, weights, checkpoint)
    module = weights_model(name, entry, read_checkpoint(path), str(path))
    layer = first_layer_weight(name).key.removesuffix(".weight")
    transform = input_transform(module, layer, mean, std, sides=(entry.meta.get("min_size", (224,))[0],))
    return (mean, std) if transform is None else transform.normalisation(mean, std)


def load_first_layer(path: str | Path, name: str) -> np.ndarray:
    """(K, 3, k, k) float64 first-layer weight of model `name` read from the checkpoint at `path` (any layout
    ``checkpoints.read_checkpoint`` takes; memory-mapped, so only that tensor is read)."""
    key, k = first_layer_weight(name)
    state = read_checkpoint(path)
    try:
        key = weight_key(state, key)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: not a torchvision {name} state_dict: {error}") from None
    weight = state[key]
    if weight.ndim != 4 or tuple(weight.shape[1:]) != (3, k, k):
        raise CheckpointError(
            f"{path}: {key} has shape {tuple(weight.shape)}; a {name} first layer is (K, 3, {k}, {k})"
        )
    return weight.detach().to(torch.float64).numpy()


def pretrained_tables(
    name: str, weights: str, dataset: str, checkpoint: str | Path, raw: PatchMoments
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One pretrained model -> (its energy table, in the trained runs' layout: arch `name`, model
    'torchvision:`name`', labels 'pretrained', seed 0, kind W at ``TRAINED_STEP``; its status row, ``STATUS_COLUMNS``).

    Status 'ok' with a profile; 'missing: <checkpoint>' with an energy table of no rows when the file is not there."""
    k = first_layer_weight(name).kernel_size
    resolved = torchvision_weights(name, weights).name
    status = {"model": name, "weights": resolved, "dataset": dataset, "kernel_size": k, "checkpoint": str(checkpoint)}
    keys = {"dataset": dataset, "arch": name, "model": f"torchvision:{name}", "labels": PRETRAINED,
            "seed": PRETRAINED_SEED, "kernel_size": k}  # fmt: skip
    # its own fit group: a PCA of patches normalised as this model's input (see theory.FIT_GROUPS)
    normalisation = f"torchvision {name} {resolved}"
    if raw.dim != 3 * k * k:
        raise ValueError(f"{name}: patch moments of dimension {raw.dim}, its {k}x{k}x3 first layer needs {3 * k * k}")
    if not Path(checkpoint).is_file():
        d = raw.dim
        empty = energy_table({TRAINED_STEP: np.zeros((1, d))}, np.ones(d), np.eye(d), keys, kinds=("W",)).iloc[:0]
        return empty.assign(normalisation=normalisation), pd.DataFrame([{**status, "status": f"missing: {checkpoint}"}])
    mean, std = input_normalisation(name, weights, checkpoint)
    eigenvalues, basis = patch_pca(normalise_moments(raw, mean, std).covariance())
    snapshots = {TRAINED_STEP: load_first_layer(checkpoint, name)}
    energy = energy_table(snapshots, eigenvalues, basis, keys, kinds=("W",), normalisation=normalisation)
    return energy, pd.DataFrame([{**status, "status": "ok"}])
