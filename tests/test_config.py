"""Unit tests for firstlayer.config: schema validation with defaults, clear errors, the run grid."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from firstlayer.analysis import arch_relation
from firstlayer.config import (
    ConfigError,
    Run,
    TrainJob,
    architecture_entries,
    expand_grid,
    iter_datasets,
    kernel_sizes,
    load_schema,
    parse_seed_key,
    train_jobs,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
datasets:
  a: {source: embedded}
  b: {source: cifar10, root: /tmp/cifar}
architectures:
  lin: {model: linear, lr: 0.1, steps: 10}
  cnn5: {model: small_cnn, kernel_size: 5, width: 8, lr: 0.1, steps: 10}
  res: {model: resnet18, kernel_size: 7, lr: 0.1, steps: 10}
grid:
  - datasets: [a]
    architectures: [lin]
    labels: [true, random]
"""


@pytest.fixture
def minimal() -> dict:
    return yaml.safe_load(MINIMAL)


def load(path: Path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def rejected(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    return str(err.value)


# ------------------------------------------------------------------------ valid configs


@pytest.mark.parametrize("path", ["config.yaml", "tests/configs/smoke.yaml"])
def test_shipped_configs_are_valid(path):
    if not (ROOT / path).exists():
        pytest.skip(f"{path} does not exist")
    raw = load(ROOT / path)
    config = validate_config(raw)
    for section in ("snapshots", "patches", "fit", "training"):
        assert section in config
    for block in config["grid"]:
        assert "labels" in block and "seeds" in block
        assert set(block["labels"]) <= {"true", "random", "frozen"}
    assert all("kernel_size" in a for a in config["architectures"].values())
    assert expand_grid(config)


def test_defaults_are_filled_everywhere(minimal):
    schema = load_schema()
    config = validate_config(minimal)
    for section in ("snapshots", "patches", "fit", "training"):
        for key, sub in schema["properties"][section]["properties"].items():
            if "default" in sub:
                assert config[section][key] == sub["default"], (section, key)
    assert config["snapshots"]["count"] == 12
    assert config["analysis"]["null_draws"] == 1000
    assert config["fit"]["points_per_decade"] == 40
    assert config["grid"][0]["seeds"] == [0, 1]
    lin = config["architectures"]["lin"]
    assert lin["kernel_size"] == 3 and lin["optimizer"] == "sgd" and lin["batch_size"] == 64
    assert config["datasets"]["a"]["labels"] == "photo" and config["datasets"]["a"]["image_size"] == 32
    assert config["datasets"]["b"]["download"] is False
    assert "labels" not in config["datasets"]["b"]  # another source's defaults do not leak in


def test_architecture_entries_fill_the_schema_defaults(minimal):
    minimal["architectures"]["lin_small"] = {"model": "linear", "lr": 0.1, "steps": 10, "init_scale": 0.01,
                                             "optimizer": "sgd", "seeds_per_job": 3}  # fmt: skip
    entries = architecture_entries(validate_config(minimal))
    assert set(entries) == {"lin", "cnn5", "res", "lin_small"}
    assert entries["lin"]["init_scale"] == 1.0 and entries["lin"]["momentum"] == 0.9
    assert entries["lin_small"]["optimizer"] == entries["lin"]["optimizer"] == "sgd"
    # filled in, two entries that read alike are one setting: lin and lin_small differ in init scale only
    assert arch_relation(entries["lin"], entries["lin_small"]) == "init scale"
    assert arch_relation(entries["lin"], entries["cnn5"]) == "architecture"
    raw = architecture_entries({"architectures": {"x": {"model": "linear"}}})["x"]
    assert raw["model"] == "linear" and raw["init_scale"] == 1.0  # no validation needed


def test_the_shipped_small_init_architecture_is_the_linear_cnn_at_another_init_scale():
    entries = architecture_entries(validate_config(load(ROOT / "config.yaml")))
    if not {"linear", "linear_small_init"} <= set(entries):
        pytest.skip("config.yaml has no linear / linear_small_init pair")
    assert arch_relation(entries["linear"], entries["linear_small_init"]) == "init scale"


def test_grid_labels_default(minimal):
    del minimal["grid"][0]["labels"]
    assert validate_config(minimal)["grid"][0]["labels"] == ["true", "random"]


def test_validation_does_not_modify_its_input(minimal):
    before = copy.deepcopy(minimal)
    validate_config(minimal)
    assert minimal == before


def test_bare_yaml_true_is_the_label_mode_true(minimal):
    assert minimal["grid"][0]["labels"] == [True, "random"]  # what YAML gives
    assert validate_config(minimal)["grid"][0]["labels"] == ["true", "random"]


def test_explicit_values_are_kept(minimal):
    minimal["snapshots"] = {"count": 3}
    minimal["architectures"]["lin"]["kernel_size"] = 5
    config = validate_config(minimal)
    assert config["snapshots"]["count"] == 3 and config["architectures"]["lin"]["kernel_size"] == 5


# ------------------------------------------------------------------------ errors


def test_unknown_top_level_key(minimal):
    minimal["trainig"] = {}
    msg = rejected(minimal)
    assert "trainig" in msg and "(top level)" in msg
    for key in ("datasets", "architectures", "grid", "training", "snapshots"):
        assert key in msg


def test_unknown_key_in_architecture_lists_allowed_keys(minimal):
    minimal["architectures"]["lin"]["kernal_size"] = 3
    msg = rejected(minimal)
    assert "architectures.lin" in msg and "kernal_size" in msg
    assert re.search(r"allowed keys here: .*kernel_size", msg)
    for key in ("lr", "steps", "model", "width", "batch_size"):
        assert key in msg


def test_negative_lr(minimal):
    minimal["architectures"]["lin"]["lr"] = -0.1
    msg = rejected(minimal)
    assert "architectures.lin.lr" in msg and "-0.1" in msg


def test_zero_lr(minimal):
    minimal["architectures"]["lin"]["lr"] = 0
    assert "architectures.lin.lr" in rejected(minimal)


def test_even_kernel_size(minimal):
    minimal["architectures"]["lin"]["kernel_size"] = 4
    msg = rejected(minimal)
    assert "architectures.lin.kernel_size" in msg
    assert all(str(k) in msg for k in (1, 3, 5, 7))


def test_unknown_model_lists_allowed(minimal):
    minimal["architectures"]["lin"]["model"] = "vgg11"
    msg = rejected(minimal)
    assert "architectures.lin.model" in msg and "vgg11" in msg
    for name in ("linear", "small_cnn", "resnet18"):
        assert name in msg


def test_unknown_dataset_in_grid(minimal):
    minimal["grid"][0]["datasets"] = ["a", "imagenet"]
    msg = rejected(minimal)
    assert "grid.0.datasets" in msg and "imagenet" in msg and "a, b" in msg


def test_unknown_architecture_in_grid(minimal):
    minimal["grid"].append({"datasets": ["a"], "architectures": ["vgg"]})
    msg = rejected(minimal)
    assert "grid.1.architectures" in msg and "vgg" in msg and "lin" in msg


def test_unknown_label_mode(minimal):
    minimal["grid"][0]["labels"] = ["true", "shuffled"]
    msg = rejected(minimal)
    assert "grid.0.labels" in msg and "shuffled" in msg and "random" in msg


def test_wrong_type(minimal):
    minimal["architectures"]["lin"]["steps"] = "400 steps"  # "400" is read as 400 (what --config passes)
    msg = rejected(minimal)
    assert "architectures.lin.steps" in msg and "integer" in msg


def test_resnet18_width_must_be_64(minimal):
    minimal["architectures"]["res"]["width"] = 32
    msg = rejected(minimal)
    assert "architectures.res.width" in msg and "64" in msg
    minimal["architectures"]["res"]["width"] = 64
    validate_config(minimal)


def test_missing_required_key(minimal):
    del minimal["grid"]
    assert "grid" in rejected(minimal)


def test_dataset_option_of_another_source(minimal):
    minimal["datasets"]["a"]["root"] = "/data"
    msg = rejected(minimal)
    assert "datasets.a" in msg and "root" in msg


def test_unknown_dataset_source(minimal):
    minimal["datasets"]["a"]["source"] = "imagenet"
    msg = rejected(minimal)
    assert "datasets.a.source" in msg and "cifar10" in msg


def test_error_is_a_value_error(minimal):
    minimal["architectures"]["lin"]["lr"] = -1
    with pytest.raises(ValueError):
        validate_config(minimal)


# ------------------------------------------------------------------------ grid


def test_expand_grid_union_without_duplicates(minimal):
    minimal["grid"] = [
        {"datasets": ["a", "b"], "architectures": ["lin"], "labels": ["true"], "seeds": [0, 1]},
        {"datasets": ["a"], "architectures": ["lin", "cnn5"], "labels": ["true", "random"], "seeds": [1]},
    ]
    runs = expand_grid(validate_config(minimal))
    assert all(isinstance(r, Run) for r in runs)
    assert len(runs) == len(set(runs))
    expected = {Run(d, "lin", "true", s) for d in ("a", "b") for s in (0, 1)}
    expected |= {Run("a", arch, lab, 1) for arch in ("lin", "cnn5") for lab in ("true", "random")}
    assert set(runs) == expected and len(runs) == 7
    assert runs[0] == Run("a", "lin", "true", 0)  # stable: the order of the blocks
    assert runs == expand_grid(validate_config(minimal))


def test_default_config_grid():
    config = validate_config(load(ROOT / "config.yaml"))
    runs = expand_grid(config)
    expected = set()
    for block in config["grid"]:
        for d in block["datasets"]:
            for a in block["architectures"]:
                for lab in block["labels"]:
                    for s in block["seeds"]:
                        expected.add(Run(d, a, lab, int(s)))
    assert set(runs) == expected and len(runs) == len(expected)


def test_train_jobs_group_seeds_per_architecture(minimal):
    minimal["architectures"]["lin"]["seeds_per_job"] = 2
    minimal["grid"] = [
        {"datasets": ["a"], "architectures": ["lin", "cnn5"], "labels": ["true"], "seeds": [0, 1, 2]},
        {"datasets": ["a"], "architectures": ["lin"], "labels": ["true"], "seeds": [7]},
    ]
    jobs = train_jobs(validate_config(minimal))
    assert jobs == [
        TrainJob("a", "lin", "true", (0, 1)),
        TrainJob("a", "lin", "true", (2, 7)),
        TrainJob("a", "cnn5", "true", (0,)),
        TrainJob("a", "cnn5", "true", (1,)),
        TrainJob("a", "cnn5", "true", (2,)),
    ]
    assert [j.seed_key for j in jobs[:3]] == ["0+1", "2+7", "0"]
    assert all(parse_seed_key(j.seed_key) == j.seeds for j in jobs)
    runs = {(r.dataset, r.arch, r.labels, r.seed) for r in expand_grid(validate_config(minimal))}
    assert runs == {(j.dataset, j.arch, j.labels, s) for j in jobs for s in j.seeds}  # every run exactly once


def test_seeds_per_job_only_for_stackable_models(minimal):
    minimal["architectures"]["res"]["seeds_per_job"] = 4
    msg = rejected(minimal)
    assert "architectures.res.seeds_per_job" in msg and "linear, small_cnn" in msg
    minimal["architectures"]["res"]["seeds_per_job"] = 1
    minimal["architectures"]["cnn5"]["seeds_per_job"] = 4
    validate_config(minimal)


def test_kernel_sizes_per_dataset(minimal):
    minimal["grid"] = [
        {"datasets": ["a"], "architectures": ["lin", "cnn5"]},
        {"datasets": ["b"], "architectures": ["res"]},
    ]
    minimal["patches"] = {"extra_kernel_sizes": [1, 5]}
    config = validate_config(minimal)
    # every dataset also gets the exact linear check's kernel size (theory.kernel_size, 3 by default)
    assert kernel_sizes(config, "a") == [1, 3, 5]
    assert kernel_sizes(config, "b") == [1, 3, 5, 7]
    minimal["patches"] = {}
    minimal["theory"] = {"kernel_size": 5}
    config = validate_config(minimal)
    assert kernel_sizes(config, "a") == [3, 5]
    assert kernel_sizes(config, "b") == [5, 7]


def test_iter_datasets_only_used(minimal):
    config = validate_config(minimal)
    assert list(iter_datasets(config)) == ["a"]


def test_frozen_label_mode_and_new_architecture_defaults(minimal):
    minimal["grid"][0]["labels"] = [True, "random", "frozen"]
    config = validate_config(minimal)
    assert config["grid"][0]["labels"] == ["true", "random", "frozen"]
    lin = config["architectures"]["lin"]
    assert lin["augment"] is False and lin["init_scale"] == 1.0 and "epochs" not in lin
    assert config["training"]["checkpoint_minutes"] == 10


def test_epochs_instead_of_steps(minimal):
    del minimal["architectures"]["lin"]["steps"]
    minimal["architectures"]["lin"]["epochs"] = 3
    lin = validate_config(minimal)["architectures"]["lin"]
    assert lin["epochs"] == 3 and "steps" not in lin


@pytest.mark.parametrize(("steps", "epochs", "found"), [(10, 3, "both"), (None, None, "neither")])
def test_exactly_one_of_steps_and_epochs(minimal, steps, epochs, found):
    lin = minimal["architectures"]["lin"]
    lin.pop("steps")
    lin.update({k: v for k, v in (("steps", steps), ("epochs", epochs)) if v is not None})
    msg = rejected(minimal)
    assert "architectures.lin" in msg and "exactly one of 'steps'" in msg and "'epochs'" in msg and found in msg


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("lin", "init_scale", 0), ("lin", "init_scale", -1.0), ("lin", "epochs", 0), ("lin", "augment", "yes")],
)
def test_bad_training_options(minimal, section, key, value):
    minimal["architectures"][section][key] = value
    assert f"architectures.{section}.{key}" in rejected(minimal)


def test_checkpoint_minutes_is_not_negative(minimal):
    minimal["training"] = {"checkpoint_minutes": -1}
    assert "training.checkpoint_minutes" in rejected(minimal)
    minimal["training"] = {"checkpoint_minutes": 0}
    assert validate_config(minimal)["training"]["checkpoint_minutes"] == 0
