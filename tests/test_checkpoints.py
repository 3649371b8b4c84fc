"""Unit tests for firstlayer.checkpoints: every layout people save, read with weights_only=True; clear errors."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from firstlayer.checkpoints import (
    CheckpointError,
    first_layer_key,
    read_checkpoint,
    state_dict_of,
    strip_wrappers,
    weight_key,
)


@pytest.fixture(scope="module")
def state() -> OrderedDict[str, torch.Tensor]:
    """A torchvision ResNet-18 state_dict (seeded): conv1 and, deeper, layer1.0.conv1 (a same-named suffix)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18().state_dict()


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


LAYOUTS = {
    "bare state_dict": lambda s: s,
    "{'state_dict': ...}": lambda s: {"state_dict": s, "epoch": 3},
    "{'model': ...}": lambda s: {"model": s, "optimizer": {"lr": 0.1}},
    "{'model_state_dict': ...}": lambda s: {"model_state_dict": s, "step": 10},
    "Lightning (model. prefix, extras)": lambda s: {
        "epoch": 1,
        "global_step": 100,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {**_prefixed(s, "model."), "loss.weight": torch.ones(10)},
        "optimizer_states": [{"state": {}}],
        "callbacks": {"ModelCheckpoint": {"best_model_score": 0.5}},
    },
    "DataParallel (module. prefix)": lambda s: _prefixed(s, "module."),
    "torch.compile (_orig_mod. prefix)": lambda s: _prefixed(s, "_orig_mod."),
    "DataParallel inside {'model': ...}": lambda s: {"model": _prefixed(s, "module.")},
    "Lightning with its own attribute name": lambda s: {"state_dict": _prefixed(s, "net.")},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_gives_the_first_layer_weight(tmp_path: Path, state, layout: str) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save(LAYOUTS[layout](state), path)
    read = read_checkpoint(path)
    key = weight_key(read, "conv1")
    assert torch.equal(read[key], state["conv1.weight"]), layout
    assert key.endswith("conv1.weight") and "layer1" not in key
    if "own attribute" not in layout:  # an unknown prefix is trusted only for a 3-channel (first-layer) weight
        assert torch.equal(read[weight_key(read, "layer1.0.conv1")], state["layer1.0.conv1.weight"])
    assert torch.equal(read[first_layer_key(read)], state["conv1.weight"])  # the only 3-channel conv weight


def test_safetensors_files_are_read(tmp_path: Path, state) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    path = tmp_path / "model.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in state.items()}, path)
    assert torch.equal(read_checkpoint(path)[weight_key(read_checkpoint(path), "conv1")], state["conv1.weight"])


def test_a_missing_file_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint .*nowhere\.pt does not exist \(looked at /"):
        read_checkpoint(tmp_path / "nowhere.pt")


def test_a_pickled_module_is_refused_by_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3)), path)
    with pytest.raises(CheckpointError, match=r"weights_only=True.*save `model.state_dict\(\)` instead"):
        read_checkpoint(path)


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a torch checkpoint"):
        read_checkpoint(path)


def test_a_dict_without_tensors_names_its_keys() -> None:
    with pytest.raises(CheckpointError, match=r"no state_dict \(top-level keys: epoch, config\)"):
        state_dict_of({"epoch": 1, "config": {"lr": 0.1}})


def test_a_missing_key_lists_the_3_channel_weights(state) -> None:
    with pytest.raises(CheckpointError, match=r"no key stem\.weight; its 3-channel conv weights: conv1\.weight"):
        weight_key(state, "stem")


def test_two_prefixed_copies_are_ambiguous(state) -> None:
    """A checkpoint holding a model and its EMA copy under wrapper-like prefixes names both."""
    both = {**_prefixed(state, "model."), **_prefixed(state, "module.")}
    with pytest.raises(CheckpointError, match=r"several keys for conv1\.weight: model\.conv1\.weight, module\.conv1"):
        weight_key(both, "conv1")


def test_a_checkpoint_alone_with_several_input_weights_asks_which() -> None:
    two = {
        "a.weight": torch.zeros(4, 3, 3, 3),
        "b.weight": torch.zeros(4, 3, 5, 5),
        "c.weight": torch.zeros(4, 4, 3, 3),
    }
    with pytest.raises(CheckpointError, match=r"several 3-channel conv weights: a\.weight \[4, 3, 3, 3\], b\.weight"):
        first_layer_key(two)
    assert first_layer_key(two, "b") == "b.weight"
    with pytest.raises(CheckpointError, match="no 4-D weight with 3 input channels"):
        first_layer_key({"c.weight": torch.zeros(4, 4, 3, 3)})


def test_wrapper_prefixes_are_stripped_with_the_module_versions(state) -> None:
    """The state_dict of the wrapped model itself, its _metadata (module versions some modules read) kept."""
    wrapped = OrderedDict(_prefixed(state, "module."))
    wrapped._metadata = {"module": {"version": 1}, "module.conv1": {"version": 2}}
    plain = strip_wrappers(wrapped)
    assert list(plain) == list(state) and plain._metadata == {"": {"version": 1}, "conv1": {"version": 2}}
    assert list(strip_wrappers({"model.a.weight": 1, "b.weight": 2})) == ["model.a.weight", "b.weight"]
