"""First-layer energy profiles of pretrained torchvision ImageNet models, in the PCA basis of the dataset's patches
normalised as the model's input (docs/method.md, The energy profile). Nothing is downloaded: the checkpoint comes
from a configured path or torchvision's hub cache, and only its first-layer tensor is read."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torchvision

from firstlayer.energy import energy_profile
from firstlayer.modelspec import hub_checkpoint as hub_checkpoint_of
from firstlayer.modelspec import torchvision_weights, weights_normalisation
from firstlayer.patches import PatchMoments, normalise_moments, patch_pca


class FirstLayerWeight(NamedTuple):
    """Where a torchvision model keeps its first layer: the state_dict key of its weight, and its kernel size."""

    key: str
    kernel_size: int


def _family(names: list[str], key: str, kernel_size: int) -> dict[str, FirstLayerWeight]:
    return {name: FirstLayerWeight(key, kernel_size) for name in names}


#: torchvision classification models whose first layer is one 3-channel Conv2d that the normalised image goes
#: into (a test checks each entry with forward hooks on a meta-device model). GoogLeNet and Inception-v3 are left
#: out: their ImageNet weights re-normalise the input inside the network (``transform_input``).
PRETRAINED_FIRST_LAYER: dict[str, FirstLayerWeight] = {
    "alexnet": FirstLayerWeight("features.0.weight", 11),
    **_family(["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"], "conv1.weight", 7),
    **_family(["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"], "conv1.weight", 7),
    **_family(["wide_resnet50_2", "wide_resnet101_2"], "conv1.weight", 7),
    **_family(
        ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"], "features.0.weight", 3
    ),
    **_family(["densenet121", "densenet161", "densenet169", "densenet201"], "features.conv0.weight", 7),
    "squeezenet1_0": FirstLayerWeight("features.0.weight", 7),
    "squeezenet1_1": FirstLayerWeight("features.0.weight", 3),
    **_family(["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"], "features.0.0.weight", 3),
    **_family([f"efficientnet_b{i}" for i in range(8)], "features.0.0.weight", 3),
    **_family(["efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"], "features.0.0.weight", 3),
    **_family(
        ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"], "conv1.0.weight", 3
    ),
    **_family(["mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"], "layers.0.weight", 3),
    **_family(["convnext_tiny", "convnext_small", "convnext_base", "convnext_large"], "features.0.0.weight", 4),
    **_family(["swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"], "features.0.0.weight", 4),
    **_family(["vit_b_16", "vit_l_16"], "conv_proj.weight", 16),
    "vit_h_14": FirstLayerWeight("conv_proj.weight", 14),
}

#: Columns of a profile table (one row per component; one row with empty profile columns when not measured).
COLUMNS = ("model", "weights", "dataset", "kernel_size", "checkpoint", "status", "component", "eigenvalue", "energy")


def first_layer_weight(name: str) -> FirstLayerWeight:
    """The first-layer key and kernel size of torchvision model `name`."""
    if name not in PRETRAINED_FIRST_LAYER:
        raise ValueError(f"unknown pretrained model {name!r}; allowed: {', '.join(PRETRAINED_FIRST_LAYER)}")
    return PRETRAINED_FIRST_LAYER[name]


def weights_entry(name: str, weights: str) -> torchvision.models.WeightsEnum:
    """torchvision's weights enum member `weights` (e.g. 'IMAGENET1K_V1', or 'DEFAULT') of model `name`."""
    first_layer_weight(name)
    return torchvision_weights(name, weights)


def hub_checkpoint(name: str, weights: str) -> Path:
    """Where torchvision stores the checkpoint of these weights once downloaded (nothing is downloaded here)."""
    return hub_checkpoint_of(weights_entry(name, weights))


def checkpoint_path(name: str, weights: str, path: str | Path | None = None) -> Path:
    """The checkpoint file to read: `path` when configured, else torchvision's hub-cache file for the weights."""
    return Path(path).expanduser() if path else hub_checkpoint(name, weights)


def input_normalisation(name: str, weights: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (in [0, 1] pixel units) of the weights' own preprocessing (ImageNet's)."""
    return weights_normalisation(weights_entry(name, weights))


def load_first_layer(path: str | Path, name: str) -> np.ndarray:
    """(K, 3, k, k) float64 first-layer weight of model `name` read from the state_dict saved at `path`.

    Accepts a bare state_dict or one wrapped under 'state_dict' or 'model'; reads the file memory-mapped when it
    is in torch's zip format, so only the first-layer tensor is loaded."""
    key, k = first_layer_weight(name)
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    for wrapper in ("state_dict", "model"):
        if key not in state and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if key not in state:
        raise ValueError(f"{path}: no {key!r} in this checkpoint, so it is not a torchvision {name} state_dict")
    weight = state[key]
    if weight.ndim != 4 or tuple(weight.shape[1:]) != (3, k, k):
        raise ValueError(f"{path}: {key} has shape {tuple(weight.shape)}; a {name} first layer is (K, 3, {k}, {k})")
    return weight.detach().to(torch.float64).numpy()


def first_layer_profile(
    weight: np.ndarray, raw: PatchMoments, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(K, 3, k, k) filters, raw patch moments and the model's input mean/std -> eigenvalues (d,) of the patches
    normalised that way and the filters' energy (d,) in their PCA basis (docs/method.md, The energy profile)."""
    eigenvalues, basis = patch_pca(normalise_moments(raw, mean, std).covariance())
    return eigenvalues, energy_profile(weight.reshape(weight.shape[0], -1), basis)


def pretrained_frame(name: str, weights: str, dataset: str, checkpoint: str | Path, raw: PatchMoments) -> pd.DataFrame:
    """The profile table of one pretrained model (columns ``COLUMNS``).

    Status 'ok': one row per component. When `checkpoint` does not exist the status is 'missing: <checkpoint>' and
    the table has one row with that status and empty component, eigenvalue and energy (no profile)."""
    k = first_layer_weight(name).kernel_size
    resolved = weights_entry(name, weights).name
    keys = {"model": name, "weights": resolved, "dataset": dataset, "kernel_size": k, "checkpoint": str(checkpoint)}
    if not Path(checkpoint).is_file():
        empty = {"component": pd.array([pd.NA], dtype="Int64"), "eigenvalue": [np.nan], "energy": [np.nan]}
        return pd.DataFrame({**keys, "status": f"missing: {checkpoint}", **empty}, columns=list(COLUMNS))
    if raw.dim != 3 * k * k:
        raise ValueError(f"{name}: patch moments of dimension {raw.dim}, its {k}x{k}x3 first layer needs {3 * k * k}")
    mean, std = input_normalisation(name, weights)
    eigenvalues, energy = first_layer_profile(load_first_layer(checkpoint, name), raw, mean, std)
    profile = {
        "component": pd.array(np.arange(1, raw.dim + 1), dtype="Int64"),
        "eigenvalue": eigenvalues,
        "energy": energy,
    }
    return pd.DataFrame({**keys, "status": "ok", **profile}, columns=list(COLUMNS))
