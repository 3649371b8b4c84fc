"""Profile one network's first layer on a dataset, as the workflow does for its own runs: exact patch moments at
the layer's kernel size, the energy profile of W (and W − W0), both fits of the linear-systems formula and the
response flatness (docs/method.md: Patch statistics, The energy profile, Fitting the formula, Whitening)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from firstlayer.checkpoints import CheckpointError, first_layer_key, read_checkpoint, state_dict_of, weight_key
from firstlayer.datasets import (
    EMBEDDED_PRESETS,
    DatasetError,
    PreparedDataset,
    channel_stats,
    embedded_preset,
    load_image_folder,
)
from firstlayer.discovery import FirstLayer, FirstLayerError, check_first_layer, find_first_layer
from firstlayer.energy import KINDS, TRAINED_STEP, profile_tables
from firstlayer.io import load_dataset
from firstlayer.modelspec import (
    LoadedModel,
    ModelSpecError,
    first_layer_weight,
    input_transform,
    load_model,
    parse_model_spec,
)
from firstlayer.patches import normalise_moments, patch_pca, raw_patch_moments
from firstlayer.plots import COMPONENT_LABEL, ENERGY_LABEL, FORMULA_NAME, KIND_NAMES, _plain_log_ticks, _scaled, _styled
from firstlayer.theory import formula_profile, init_aware_profile

#: A dataset prefix for the embedded presets: ``embedded:rotations``.
EMBEDDED_PREFIX = "embedded:"


class ProfileError(ValueError):
    """Weights, an init or a normalisation that do not fit the first layer."""


@dataclass(frozen=True)
class ImageData:
    """(N, 3, H, W) uint8 images to take patches from, what they are in words, and their number of classes."""

    images: np.ndarray
    name: str
    num_classes: int | None = None


def _train_split(dataset: PreparedDataset, name: str) -> ImageData:
    images, _ = dataset.split("train")
    return ImageData(np.ascontiguousarray(images), name, dataset.num_classes)


def load_images(data: Any, *, image_size: int = 32) -> ImageData:
    """The images of `data`: a PreparedDataset or a folder of one (images.npy + manifest.parquet, as the workflow
    writes) -> its training split; 'embedded:NAME' -> that preset's training split; an image folder (one
    sub-folder per class) -> its training split at `image_size`; an (N, 3, H, W) uint8 array -> all of it."""
    if isinstance(data, ImageData):
        return data
    if isinstance(data, PreparedDataset):
        return _train_split(data, "the dataset's training split")
    if isinstance(data, np.ndarray | torch.Tensor):
        images = np.ascontiguousarray(torch.as_tensor(data).cpu().numpy())
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3 or not len(images):
            raise DatasetError(f"image arrays must be (N, 3, H, W) uint8, got {images.dtype} {images.shape}")
        return ImageData(images, "the given array")
    if not isinstance(data, str | Path):
        raise DatasetError(f"data must be a prepared dataset, a folder, 'embedded:NAME' or an array, not {type(data)}")
    text = str(data)
    if text.startswith(EMBEDDED_PREFIX):
        return _train_split(embedded_preset(text.removeprefix(EMBEDDED_PREFIX)), text)
    root = Path(text).expanduser()
    if (root / "images.npy").is_file() and (root / "manifest.parquet").is_file():
        return _train_split(load_dataset(root / "images.npy", root / "manifest.parquet"), str(root))
    if not root.is_dir():
        presets = ", ".join(EMBEDDED_PREFIX + n for n in EMBEDDED_PRESETS)
        raise DatasetError(f"data {text!r} is neither {presets} nor an existing folder (looked at {root.resolve()})")
    return _train_split(load_image_folder(root, image_size=image_size), str(root))


# ------------------------------------------------------------------------ the first-layer weights


@dataclass(frozen=True)
class LayerWeights:
    """The first layer's (K, 3, k, k) float64 weights, its name, what it is and how it was found, and the model and
    weights it was read from, in words."""

    weight: np.ndarray
    name: str
    description: str
    found_by: str
    model: str
    weights: str


def _as_array(weight: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    array = torch.as_tensor(weight).detach().to("cpu", torch.float64).numpy()
    if array.ndim != 4 or array.shape[1] != 3 or array.shape[2] != array.shape[3]:
        raise ProfileError(f"{what} has shape {array.shape}; a first layer is (K, 3, k, k)")
    return array


def _layer_of_checkpoint(state: Mapping[str, torch.Tensor], first_layer: str | None, where: str) -> LayerWeights:
    """A checkpoint read without its network: the tensor of module `first_layer`, else its only 3-channel one."""
    key = first_layer_key(state, first_layer)
    weight = _as_array(state[key], f"{where}: {key}")
    k, n = weight.shape[-1], weight.shape[0]
    how = "named by the caller" if first_layer else "the checkpoint's only 3-channel conv weight"
    name = key.removesuffix(".weight")
    return LayerWeights(weight, name, f"{key}: {n} filters {k}x{k}", how, "checkpoint", f"from {where}")


def _names_a_model(text: str | Path) -> bool:
    """A model spec ('torchvision:resnet18', 'my_net.py:build', 'resnet20') rather than a checkpoint file."""
    if Path(text).expanduser().is_file():
        return False
    try:
        parse_model_spec(str(text))
    except ModelSpecError:
        return False
    return True


def first_layer_weights(
    model_or_checkpoint: Any, *, first_layer: str | None = None, image_size: int = 32
) -> tuple[LayerWeights, LoadedModel | None]:
    """The first layer of an nn.Module, a LoadedModel (``firstlayer.load_model``), a model spec (at random init), a
    state_dict or a checkpoint path, and the LoadedModel (None for a checkpoint alone)."""
    if isinstance(model_or_checkpoint, str | Path) and _names_a_model(model_or_checkpoint):
        model_or_checkpoint = built(str(model_or_checkpoint), image_size=image_size)
    if isinstance(model_or_checkpoint, str | Path):
        state = read_checkpoint(model_or_checkpoint)
        return _layer_of_checkpoint(state, first_layer, str(model_or_checkpoint)), None
    if isinstance(model_or_checkpoint, Mapping):
        return _layer_of_checkpoint(state_dict_of(model_or_checkpoint), first_layer, "a state_dict"), None
    if isinstance(model_or_checkpoint, nn.Module):
        loaded = LoadedModel(type(model_or_checkpoint).__name__, model_or_checkpoint)
    elif isinstance(model_or_checkpoint, LoadedModel):
        loaded = model_or_checkpoint
    else:
        what = type(model_or_checkpoint).__name__
        raise TypeError(f"expected an nn.Module, a LoadedModel, a state_dict or a checkpoint path, not a {what}")
    found = _find_layer(loaded, image_size, first_layer)
    weight = _as_array(found.module.weight, found.name)
    if loaded.state is not None:
        key = weight_key(loaded.state, found.name)
        read = _as_array(loaded.state[key], f"{loaded.weights}: {key}")
        if read.shape != weight.shape:  # e.g. a 3x3 checkpoint for a 5x5 network: its patches would be the wrong size
            raise ProfileError(
                f"the weights' first layer {key} has shape {read.shape} (out, in, k, k), but the model's "
                f"{found.describe()} has {weight.shape}: the checkpoint is not one of this network (check --weights "
                "against MODEL, or give the model it was trained with)"
            )
        weight = read
    return LayerWeights(weight, found.name, found.describe(), found.found_by, loaded.spec, loaded.weights), loaded


def built(spec: str, **kwargs: Any) -> LoadedModel:
    """``load_model``, with the builder's own failure (e.g. a ViT refusing an image side) as a ModelSpecError."""
    try:
        return load_model(spec, **kwargs)
    except (ModelSpecError, CheckpointError):
        raise
    except Exception as error:  # a library's or user's builder may raise anything on a size it does not take
        side = kwargs.get("image_size")
        images = f" for {side}x{side} images" if side else ""
        cause = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        raise ModelSpecError(f"{spec} cannot be built{images} ({cause}); try another image size") from None


def _find_layer(loaded: LoadedModel, image_size: int, name: str | None) -> FirstLayer:
    """The first layer found by running the network; for torchvision weights that transform the input before it
    (the input itself enters no Conv2d), the one found on the same architecture built without weights."""
    try:
        return find_first_layer(loaded.module, image_size=image_size, name=name)
    except FirstLayerError as error:
        try:
            source = parse_model_spec(loaded.spec) if name is None else None
        except ModelSpecError:
            source = None
        if source is None or source.kind != "torchvision":
            raise error from None
    layer = first_layer_weight(source.name).key.removesuffix(".weight")
    how = f"forward hooks on {loaded.spec} without weights (with its weights it transforms the input first)"
    return FirstLayer(layer, check_first_layer(loaded.module, layer), how)


def init_weights(init: Any, layer: LayerWeights) -> np.ndarray | None:
    """W0 of the same layer from an nn.Module, a LoadedModel, a state_dict, a checkpoint path or a tensor."""
    if init is None:
        return None
    if isinstance(init, LoadedModel):
        init = init.state if init.state is not None else init.module
    if isinstance(init, nn.Module):
        weight = check_first_layer(init, layer.name).weight
    elif isinstance(init, str | Path) or isinstance(init, Mapping):
        state = read_checkpoint(init) if isinstance(init, str | Path) else state_dict_of(init, "the init state_dict")
        weight = state[weight_key(state, layer.name)]
    else:
        weight = init
    w0 = _as_array(weight, "the init")
    if w0.shape != layer.weight.shape:
        raise ProfileError(f"the init's first layer has shape {w0.shape}, the model's {layer.weight.shape}")
    return w0


# ------------------------------------------------------------------------ the profile


@dataclass(frozen=True)
class ModelProfile:
    """What ``analyze`` measured: tidy ``energy`` (kind, component, eigenvalue, energy), ``fits`` (kind, formula,
    tau, beta, correlation, at_bound) and ``whitening`` (stage data / init / trained, flatness), with the keys
    model, first_layer, dataset, kernel_size; and how it was measured."""

    energy: pd.DataFrame
    fits: pd.DataFrame
    whitening: pd.DataFrame
    model: str
    weights: str
    layer: str
    found_by: str
    dataset: str
    images: int
    patches: int
    kernel_size: int
    mean: np.ndarray
    std: np.ndarray
    normalisation: str

    def fit(self, kind: str = "W", formula: str = "one_parameter") -> pd.Series:
        """The fit row of one profile kind ('W', 'W-W0') and formula ('one_parameter', 'init_aware')."""
        rows = self.fits[(self.fits["kind"] == kind) & (self.fits["formula"] == formula)]
        if rows.empty:
            raise KeyError(f"no {formula} fit of {kind}; kinds here: {', '.join(self.fits['kind'].unique())}")
        return rows.iloc[0]

    def flatness(self, stage: str = "trained") -> float:
        """Response flatness of stage 'data', 'init' or 'trained' (1 = white)."""
        return float(self.whitening.set_index("stage").loc[stage, "flatness"])

    def _flatness(self, digits: int) -> str:
        rows = self.whitening[["stage", "flatness"]].itertuples(index=False)
        return ", ".join(f"{stage} {value:.{digits}g}" for stage, value in rows)

    def summary(self) -> str:
        """A few lines: the layer, the data, where the normalisation came from, the fits and the flatness."""
        lines = [
            f"model          {self.model}, weights {self.weights}",
            f"first layer    {self.layer} ({_how_found(self.found_by)})",
            f"data           {self.dataset}: {self.images} images, {self.patches:,} patches of "
            f"{self.kernel_size}x{self.kernel_size}x3",
            f"normalisation  mean {np.round(self.mean, 4).tolist()}, std {np.round(self.std, 4).tolist()}: "
            f"{self.normalisation}",
        ]
        for kind in self.fits["kind"].unique():
            one, aware = self.fit(kind, "one_parameter"), self.fit(kind, "init_aware")
            bound = " (grid end)" if one["at_bound"] else ""
            lines.append(
                f"fit of {kind:<8} one-parameter τ = {one['tau']:.4g}{bound}, r = {one['correlation']:.4f}; init-aware "
                f"τ = {aware['tau']:.4g}, β = {aware['beta']:.3g}, r = {aware['correlation']:.4f}"
            )
        lines.append(f"flatness       {self._flatness(4)} (1 = white)")
        return "\n".join(lines)

    def plot(self) -> Figure:
        """The profile of each kind with its two fitted formulas."""
        title = (f"{self.model}: first layer {self.layer}\npatches of {self.dataset}; response flatness "
                 f"(1 = white): {self._flatness(3)}")  # fmt: skip
        return plot_profile(self.energy, self.fits, title)


def _how_found(found_by: str) -> str:
    """'found by forward hooks: ...' for a method; 'named by the caller' and the like as they are."""
    return found_by if found_by.startswith(("named ", "the ")) else f"found by {found_by}"


def _values(values: np.ndarray) -> str:
    return str(np.round(np.asarray(values, dtype=np.float64), 4).tolist())


@_styled
def plot_profile(energy: pd.DataFrame, fits: pd.DataFrame, title: str) -> Figure:
    """One panel per profile kind: the measured energy (normalised to its peak) against the one-parameter and the
    init-aware formula at their fitted parameters, scaled by least squares."""
    kinds = list(dict.fromkeys(energy["kind"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(7.0, 5.2 * len(kinds)), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        rows = energy[energy["kind"] == kind].sort_values("component")
        lam, comp = rows["eigenvalue"].to_numpy(), rows["component"].to_numpy()
        measured = rows["energy"].to_numpy() / max(float(rows["energy"].max()), 1e-300)
        ax.plot(comp, measured, "o-", ms=2.5, lw=1.2, color="#1f77b4", label="measured")
        f = fits[fits["kind"] == kind].set_index("formula")
        one, aware = f.loc["one_parameter"], f.loc["init_aware"]
        model = init_aware_profile(lam, np.array([aware["tau"]]), np.array([aware["beta"]]), kind)[0]
        ax.plot(comp, _scaled(formula_profile(lam, one["tau"]), measured), "--", color="black", lw=1.5,
                label=f"{FORMULA_NAME}\nτ = {one['tau']:.3g}, r = {one['correlation']:.3f}")  # fmt: skip
        ax.plot(comp, _scaled(model, measured), ":", color="#d62728", lw=1.8,
                label=f"init-aware (τ, β): τ = {aware['tau']:.3g}, r = {aware['correlation']:.3f}")  # fmt: skip
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set(title=KIND_NAMES.get(kind, kind), xlabel=COMPONENT_LABEL, ylabel=ENERGY_LABEL)
        ax.legend(loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _reporter(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    """A log function: `progress` itself, stderr lines with the elapsed time (True), or nothing (False)."""
    if callable(progress):
        return progress
    start = time.perf_counter()

    def log(message: str) -> None:
        if progress:
            print(f"[firstlayer {time.perf_counter() - start:5.1f}s] {message}", file=sys.stderr, flush=True)

    return log


def _throttled(log: Callable[[str], None], every: float = 2.0) -> Callable[[int, int], None]:
    """raw_moments' progress callback: a line at most every `every` seconds, and at the end."""
    last = [time.perf_counter()]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] >= every:
            last[0] = now
            log(f"patch moments: {done}/{total} images")

    return report


def _normalisation(mean: Any, std: Any, loaded: LoadedModel | None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The input mean and std (None: from the data) and where they come from."""
    if (mean is None) != (std is None):
        raise ProfileError("give both mean and std, or neither")
    if mean is not None:
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean.shape != (3,) or std.shape != (3,) or np.any(std <= 0) or np.any(np.abs(mean) > 1) or np.any(std > 1):
            raise ProfileError(
                f"mean and std are 3 per-channel values in [0, 1] pixel units (x / 255), got {mean}, {std}"
            )
        return mean, std, "given"
    if loaded is not None and loaded.mean is not None:
        return loaded.mean, loaded.std, loaded.normalisation
    return None, None, "the data's (none recorded with the weights)"


def _seen_by_layer(
    loaded: LoadedModel | None, layer: str, mean: np.ndarray, std: np.ndarray, normalisation: str, side: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """The mean and std that the first layer's input is normalised by: the input's, composed with the per-channel
    affine map a network applies before that layer (GoogLeNet's transform_input, for one), found by running it on a
    few random images (``modelspec.input_transform``); and where they come from, in words."""
    if loaded is None:  # a checkpoint without its network: nothing to run
        return mean, std, normalisation
    transform = input_transform(loaded.module, layer, mean, std, sides=(side,), state=loaded.state)
    if transform is None:
        return mean, std, normalisation
    seen_mean, seen_std = transform.normalisation(mean, std)
    how = (
        f"what {layer} sees, not the input's mean {_values(mean)}, std {_values(std)} ({normalisation}): the "
        f"network maps its input x to a·x + b per channel before {layer} (a = {_values(transform.scale)}, b = "
        f"{_values(transform.offset)}, found by running it)"
    )
    return seen_mean, seen_std, how


def analyze(
    model_or_checkpoint: Any,
    data: Any,
    *,
    init: Any = None,
    first_layer: str | None = None,
    mean: Any = None,
    std: Any = None,
    progress: bool | Callable[[str], None] = True,
) -> ModelProfile:
    """Profile the first layer of `model_or_checkpoint` (an nn.Module, ``firstlayer.load_model(...)``, a model spec,
    a state_dict or a checkpoint path) on `data` (see ``load_images``): energy of W, and of W − W0 when `init` is
    given, in the PCA basis of all stride-1 patches at the layer's kernel size, normalised as the layer sees them:
    by `mean`/`std`, else the weights' recorded preprocessing, else the data's channel statistics, composed with any
    per-channel affine map the network applies to its input before the layer (found by running it); both formula
    fits; response flatness."""
    log = _reporter(progress)
    if not isinstance(data, ImageData | PreparedDataset | np.ndarray | torch.Tensor):
        log(f"loading {data}")
    images = load_images(data)
    layer, loaded = first_layer_weights(
        model_or_checkpoint, first_layer=first_layer, image_size=images.images.shape[-1]
    )
    w0 = init_weights(init, layer)
    k, (height, width) = layer.weight.shape[-1], images.images.shape[-2:]
    if k > min(height, width):
        raise ProfileError(
            f"the first layer {layer.description} has {k}x{k} filters, larger than the {height}x{width} images of "
            f"{images.name}: they hold no {k}x{k} patch to profile; use images of at least {k}x{k} pixels "
            f"(--image-size {k} or more for an image folder)"
        )
    mean, std, normalisation = _normalisation(mean, std, loaded)
    if mean is None:
        mean, std = channel_stats(images.images)
    mean, std, normalisation = _seen_by_layer(loaded, layer.name, mean, std, normalisation, min(height, width))
    log(f"first layer {layer.description}; exact moments of the {k}x{k} patches of {len(images.images)} images")
    patch = raw_patch_moments(images.images, k, progress=_throttled(log))
    eigenvalues, basis = patch_pca(normalise_moments(patch, mean, std).covariance())
    keys = {"model": layer.model, "first_layer": layer.name, "dataset": images.name, "kernel_size": k}
    snapshots = {TRAINED_STEP: layer.weight} if w0 is None else {0: w0, TRAINED_STEP: layer.weight}
    log("fitting the formula")
    tables = profile_tables(
        snapshots, eigenvalues, basis, keys, kinds=("W",) if w0 is None else KINDS, normalisation=normalisation,
        whitening_keys=list(keys),
    )  # fmt: skip
    trained = tables.energy["step"] == TRAINED_STEP
    energy, fits = tables.energy[trained], tables.fits[tables.fits["step"] == TRAINED_STEP]
    return ModelProfile(
        energy=energy[[*keys, "kind", "component", "eigenvalue", "energy"]].reset_index(drop=True),
        fits=fits[[*keys, "kind", "formula", "tau", "beta", "correlation", "at_bound"]].reset_index(drop=True),
        whitening=tables.whitening[[*keys, "stage", "flatness"]],
        model=layer.model,
        weights=layer.weights,
        layer=layer.description,
        found_by=layer.found_by,
        dataset=images.name,
        images=len(images.images),
        patches=patch.count,
        kernel_size=k,
        mean=np.asarray(mean, dtype=np.float64),
        std=np.asarray(std, dtype=np.float64),
        normalisation=normalisation,
    )
