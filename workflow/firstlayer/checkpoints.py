"""Checkpoints as people save them: a bare state_dict, one wrapped under ``state_dict``, ``model`` or
``model_state_dict`` (Lightning, training scripts), keys prefixed by ``module.`` (DataParallel), ``model.``
(Lightning) or ``_orig_mod.`` (``torch.compile``); always read with ``weights_only=True``."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

#: Keys under which training code nests the state_dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
#: Module-name prefixes that wrappers add to every key (DataParallel, Lightning, torch.compile).
WRAPPER_PREFIXES = ("module", "model", "_orig_mod")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or has no tensor for the first layer."""


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def state_dict_of(obj: Any, where: str = "the checkpoint") -> OrderedDict[str, torch.Tensor]:
    """A loaded checkpoint (any layout of the module docstring) -> its state_dict: {key: tensor}."""
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if _is_state_dict(obj) or not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, Mapping):
        tensors = OrderedDict((str(k), v) for k, v in obj.items() if isinstance(v, torch.Tensor))
        if tensors:  # a Lightning state_dict may hold non-tensor extras beside its tensors
            if hasattr(obj, "_metadata"):  # modules' versions, which some read when loading (torchvision's MNASNet)
                tensors._metadata = obj._metadata
            return tensors
    keys = f" (top-level keys: {', '.join(map(str, list(obj)[:10]))})" if isinstance(obj, Mapping) else ""
    raise CheckpointError(
        f"{where} holds no state_dict{keys}: save `model.state_dict()`, or a dict with it under one of "
        f"{', '.join(WRAPPER_KEYS)}"
    )


#: The magic number that opens torch's legacy (pre-1.6, non-zip) serialization format, pickled as a LONG1.
LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _is_legacy_torch_file(path: Path) -> bool:
    """A file torch.save wrote with ``_use_new_zipfile_serialization=False`` (its magic number in the first bytes)."""
    with path.open("rb") as f:
        return LEGACY_MAGIC in f.read(64)


def _unpickling_detail(error: Exception) -> str:
    """torch's reason a weights_only load failed, without its generic preamble: 'Unsupported global: GLOBAL ...'."""
    text = str(error).replace("\x1b[1m", "").replace("\x1b[0m", "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = [line for line in lines if "WeightsUnpickler error" in line or "Unsupported global" in line]
    return (detail or lines or [type(error).__name__])[0].removeprefix("WeightsUnpickler error: ")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ModuleNotFoundError:
        raise CheckpointError(f"{path} is a .safetensors file, which needs the safetensors package: "
                              "pip install safetensors") from None  # fmt: skip
    return load_file(path)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict saved at `path` (.pt/.pth/.ckpt in torch's zip or legacy format, or .safetensors), read with
    ``weights_only=True`` and memory-mapped when the file is in torch's zip format (only the tensors used are read)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (looked at {path.resolve()})")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    zipped = zipfile.is_zipfile(path)
    legacy = not zipped and _is_legacy_torch_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as error:
        if not zipped and not legacy:
            raise CheckpointError(f"{path} is not a torch checkpoint (torch.save writes a zip file)") from None
        what = "a torch checkpoint in the legacy (non-zip) format" if legacy else "a torch checkpoint"
        raise CheckpointError(
            f"{path} is {what} that cannot be read with weights_only=True: it pickles more than tensors "
            f"(torch: {_unpickling_detail(error)}); save `model.state_dict()` instead (a whole pickled model is not "
            "read), or, if you trust the file, allowlist that class as torch says, or load it with torch.load(path, "
            "weights_only=False) and pass its state_dict to firstlayer.analyze, or torch.save that state_dict"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"{path} is not a torch checkpoint: {error}") from None
    return state_dict_of(obj, str(path))


def strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with the wrapper prefixes (``WRAPPER_PREFIXES``) that every key shares removed, e.g. DataParallel's
    'module.conv1.weight' -> 'conv1.weight': the keys of the wrapped model itself."""
    metadata = dict(getattr(state, "_metadata", {}))  # keyed by module path: stripped alike
    state = OrderedDict(state)
    while state:
        first = next(iter(state)).partition(".")[0]
        if first not in WRAPPER_PREFIXES or not all(k.startswith(first + ".") for k in state):
            break
        state = OrderedDict((k.removeprefix(first + "."), v) for k, v in state.items())
        metadata = {k.removeprefix(first).removeprefix("."): v for k, v in metadata.items() if k.startswith(first)}
    if metadata:
        state._metadata = metadata
    return state


def input_weights(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Keys of the 4-D tensors with 3 input channels (the weights a first conv layer can have) and their shapes."""
    return {k: tuple(v.shape) for k, v in state.items() if v.ndim == 4 and v.shape[1] == 3}


def _wrapped(key: str, target: str) -> bool:
    """`key` is `target` under wrapper prefixes only, e.g. 'module.model.conv1.weight' for 'conv1.weight'."""
    if key == target:
        return True
    if not key.endswith("." + target):
        return False
    return all(part in WRAPPER_PREFIXES for part in key[: -len(target) - 1].split("."))


def weight_key(state: Mapping[str, torch.Tensor], layer: str) -> str:
    """The state_dict key of module `layer`'s weight: 'layer.weight' as it is, under wrapper prefixes, or else
    under any prefix (e.g. a Lightning module's own attribute name) when one such 3-channel 4-D tensor exists."""
    target = layer.removesuffix(".weight") + ".weight"
    found = [k for k in state if _wrapped(k, target)]
    if len(found) == 1:
        return found[0]
    if not found:
        found = [k for k in input_weights(state) if k.endswith("." + target)]
        if len(found) == 1:
            return found[0]
    listed = ", ".join(f"{k} {list(s)}" for k, s in input_weights(state).items()) or "none"
    what = f"several keys for {target}: {', '.join(found)}" if found else f"no key {target}"
    raise CheckpointError(
        f"the checkpoint has {what}; its 3-channel conv weights: {listed}. Name the first layer as the model does "
        "(first_layer=... / --first-layer), or check that the checkpoint belongs to this model"
    )


def first_layer_key(state: Mapping[str, torch.Tensor], layer: str | None = None) -> str:
    """The key of the first-layer weight of a checkpoint read without its model: that of module `layer` when given,
    else the checkpoint's only 4-D tensor with 3 input channels."""
    if layer is not None:
        return weight_key(state, layer)
    candidates = input_weights(state)
    if len(candidates) == 1:
        return next(iter(candidates))
    listed = ", ".join(f"{k} {list(s)}" for k, s in candidates.items())
    if not candidates:
        raise CheckpointError("the checkpoint has no 4-D weight with 3 input channels, so no first conv layer")
    raise CheckpointError(
        f"the checkpoint has several 3-channel conv weights: {listed}. Choose one with first_layer='NAME' "
        "(--first-layer NAME), or give the model so that its first layer is found by running it"
    )
