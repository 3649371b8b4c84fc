"""Configuration: validation against the JSON schema (with defaults), cross-checks, and the run grid."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A user error in the configuration; the message names the key and what is allowed."""


class Run(NamedTuple):
    """One training run of the grid; its fields are the wildcards of the result paths."""

    dataset: str
    arch: str
    labels: str
    seed: int


class TrainJob(NamedTuple):
    """One training job: a run family trained for one or more seeds in one process (``seeds_per_job``)."""

    dataset: str
    arch: str
    labels: str
    seeds: tuple[int, ...]

    @property
    def seed_key(self) -> str:
        """The seeds as they appear in paths: '0' for one seed, '0+1+2' for a group."""
        return "+".join(str(s) for s in self.seeds)


#: Models whose seeds can be trained together in one process (firstlayer.train.STACKABLE holds the same names).
STACKABLE_MODELS = ("linear", "small_cnn")


def parse_seed_key(key: str) -> tuple[int, ...]:
    """Inverse of TrainJob.seed_key."""
    return tuple(int(s) for s in key.split("+"))


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema as a dict."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def _with_defaults(validator_class: type) -> type:
    """A validator class that also fills in `default` values of `properties` (the jsonschema recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    """One line naming the key, the problem and (where the schema lists them) the allowed values."""
    msg = f"config key '{_path(error)}': {error.message}"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        if allowed:
            msg += f"; allowed keys here: {', '.join(allowed)}"
    elif error.validator == "const":
        msg += f"; allowed: {error.validator_value!r}"
    description = error.schema.get("description")
    if description and error.validator in {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "type"}:
        msg += f" ({description.strip()})"
    return msg


def _coerce_labels(config: dict[str, Any]) -> None:
    """YAML reads a bare `true` as a boolean: take it as the label mode "true"."""
    for block in config.get("grid") or []:
        if isinstance(block, dict) and isinstance(block.get("labels"), list):
            block["labels"] = ["true" if v is True else v for v in block["labels"]]


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate `config` against the schema, fill defaults and cross-check names; returns the completed copy.

    Raises ConfigError with one message per problem found (the most relevant schema error first).
    """
    config = copy.deepcopy(dict(config))
    _coerce_labels(config)
    schema = dict(schema) if schema is not None else load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        rest = [e for e in errors if e is not best]
        lines = [_message(best)] + [_message(e) for e in rest[:4]]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _cross_check(config)
    return config


def _cross_check(config: dict[str, Any]) -> None:
    problems: list[str] = []
    for i, block in enumerate(config["grid"]):
        for key, table in (("datasets", "datasets"), ("architectures", "architectures")):
            for name in block[key]:
                if name not in config[table]:
                    problems.append(
                        f"config key 'grid.{i}.{key}': unknown name '{name}'; defined under '{table}': "
                        + ", ".join(sorted(config[table]))
                    )
    for name, arch in config["architectures"].items():
        if arch["seeds_per_job"] > 1 and arch["model"] not in STACKABLE_MODELS:
            problems.append(
                f"config key 'architectures.{name}.seeds_per_job': {arch['model']} trains one seed per job; "
                f"several seeds per job need a model without batch statistics: {', '.join(STACKABLE_MODELS)}"
            )
        if ("steps" in arch) == ("epochs" in arch):
            found = "both" if "steps" in arch else "neither"
            problems.append(
                f"config key 'architectures.{name}': give exactly one of 'steps' (optimiser steps) and 'epochs' "
                f"(passes over the training images); found {found}"
            )
        if arch["model"] == "resnet18" and arch.get("width", 64) != 64:
            problems.append(
                f"config key 'architectures.{name}.width': resnet18's stem has 64 filters "
                "(torchvision's constructor); remove 'width' or use model small_cnn/linear"
            )
    problems += _pretrained_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _pretrained_problems(config: dict[str, Any]) -> list[str]:
    """Cross-checks of the `pretrained` section: its dataset, unique names, weights torchvision knows."""
    section = config.get("pretrained") or {}
    models = section.get("models") or []
    if not models:
        return []
    from firstlayer.pretrained import weights_entry  # imports torchvision: only when pretrained models are set

    problems = []
    dataset = section.get("dataset")
    if dataset not in config["datasets"]:
        what = "is required when 'pretrained.models' is not empty" if dataset is None else f"'{dataset}' is unknown"
        names = ", ".join(sorted(config["datasets"]))
        problems.append(f"config key 'pretrained.dataset': {what}; defined under 'datasets': {names}")
    seen: set[str] = set()
    for i, entry in enumerate(models):
        if entry["name"] in seen:
            problems.append(
                f"config key 'pretrained.models.{i}.name': {entry['name']} is listed twice "
                "(its results go to results/pretrained/{name}/)"
            )
        seen.add(entry["name"])
        try:
            weights_entry(entry["name"], entry["weights"])
        except ValueError as error:
            problems.append(f"config key 'pretrained.models.{i}.weights': {error}")
    return problems


def expand_grid(config: Mapping[str, Any]) -> list[Run]:
    """Every run of the grid (union of the blocks' products), in a stable order without duplicates."""
    runs: dict[Run, None] = {}
    for block in config["grid"]:
        for dataset in block["datasets"]:
            for arch in block["architectures"]:
                for labels in block["labels"]:
                    for seed in block["seeds"]:
                        runs[Run(dataset, arch, labels, int(seed))] = None
    return list(runs)


def train_jobs(config: Mapping[str, Any]) -> list[TrainJob]:
    """The grid's runs grouped into training jobs: each run family's seeds, in grid order, in groups of its
    architecture's ``seeds_per_job``."""
    families: dict[tuple[str, str, str], list[int]] = {}
    for run in expand_grid(config):
        families.setdefault((run.dataset, run.arch, run.labels), []).append(run.seed)
    jobs = []
    for (dataset, arch, labels), seeds in families.items():
        size = config["architectures"][arch].get("seeds_per_job", 1)
        for i in range(0, len(seeds), size):
            jobs.append(TrainJob(dataset, arch, labels, tuple(seeds[i : i + size])))
    return jobs


def kernel_sizes(config: Mapping[str, Any], dataset: str) -> list[int]:
    """Kernel sizes whose patch PCA the dataset needs: those of the networks trained on it, plus the extras, the
    exact linear check's, and the first-layer sizes of the pretrained models profiled on it."""
    sizes = {config["architectures"][r.arch]["kernel_size"] for r in expand_grid(config) if r.dataset == dataset}
    sizes.update(config["patches"]["extra_kernel_sizes"])
    sizes.add(config.get("theory", {}).get("kernel_size", 3))  # the exact linear check runs on every dataset
    pretrained = config.get("pretrained") or {}
    if pretrained.get("models") and pretrained.get("dataset") == dataset:
        from firstlayer.pretrained import first_layer_weight  # imports torchvision: only when models are set

        sizes.update(first_layer_weight(m["name"]).kernel_size for m in pretrained["models"])
    return sorted(sizes)


def iter_datasets(config: Mapping[str, Any]) -> Iterator[str]:
    """Datasets used by at least one run (unused entries are not prepared)."""
    seen: dict[str, None] = {r.dataset: None for r in expand_grid(config)}
    yield from seen


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object (the settings that produced an output)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def canonical(obj: Any) -> Any:
    """A copy with every mapping's keys sorted: Snakemake compares params as text, so key order must not matter."""
    return json.loads(json.dumps(obj, sort_keys=True))
