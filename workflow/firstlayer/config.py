"""Configuration: validation against the JSON schema (with defaults), cross-checks, and the run grid."""

from __future__ import annotations

import copy
import functools
import importlib.resources
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import yaml

from firstlayer.models import MODELS, image_size_problem, is_user_model, kernel_problem, stackable_models
from firstlayer.modelspec import SPEC_FORMS, model_spec

#: The config schema, package data of firstlayer: an installed package validates configs without the repository.
SCHEMA_PATH = importlib.resources.files("firstlayer") / "config.schema.yaml"


#: A finite decimal number as YAML 1.2 writes it ('1e-3', '5E-4', '.5'); PyYAML's YAML 1.1 floats need a dot.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


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


def parse_seed_key(key: str) -> tuple[int, ...]:
    """Inverse of TrainJob.seed_key."""
    return tuple(int(s) for s in key.split("+"))


def load_schema() -> dict[str, Any]:
    """The config schema as a dict; the `model` enum is filled in from the model registry (firstlayer.models.MODELS),
    the one list of models (a model is one of them or a user model's spec, the schema's pattern)."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["$defs"]["architecture"]["properties"]["model"]["anyOf"][0]["enum"] = list(MODELS)
    return schema


@functools.lru_cache
def schema_default(section: str, key: str) -> Any:
    """The schema's default of `key` in `section` ("training", or "architecture" for an architecture entry): the
    one home of every default, which the package's dataclasses read too."""
    schema = load_schema()
    where = schema["$defs"]["architecture"] if section == "architecture" else schema["properties"][section]
    return copy.deepcopy(where["properties"][key]["default"])


def architecture_entries(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """arch -> its config entry with every schema default filled in: two entries that read alike are one setting
    (``analysis.arch_relation`` names what two architectures differ in)."""
    props = load_schema()["$defs"]["architecture"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    return {arch: {**copy.deepcopy(defaults), **entry} for arch, entry in config["architectures"].items()}


@functools.cache
def non_result_settings() -> dict[str, tuple[str, ...]]:
    """section -> the keys whose schema entry says ``affects_results: false`` (how often a job logs or saves its
    progress): the one list of settings that no job's parameters hold, so that changing them reruns nothing."""
    schema = load_schema()
    return {
        section: keys
        for section, entry in schema["properties"].items()
        if (keys := tuple(k for k, v in entry.get("properties", {}).items() if v.get("affects_results") is False))
    }


def result_settings(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A config section without its non-result settings (non_result_settings): what a job's parameters hold."""
    return {k: v for k, v in values.items() if k not in non_result_settings().get(section, ())}


def config_file_problem(path: str | Path) -> str | None:
    """What stops a config file from being read as YAML, with its file, line and column; None when it reads.
    Snakemake's own message for a YAML error names neither the file nor the line."""
    try:
        with open(path, encoding="utf-8") as fh:
            yaml.safe_load(fh)
    except OSError as error:
        where = path if Path(path).is_absolute() else f"{path} (here {Path(path).absolute()})"
        return f"cannot read config file {where}: {error.strerror}"
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = error.problem or error.context
        if error.problem and error.context and error.context_mark:
            what += f" ({error.context} that starts on line {error.context_mark.line + 1})"
        return f"config file {path}{where}: {what}"
    except yaml.YAMLError as error:
        return f"config file {path}: {error}"
    return None


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
    elif error.validator == "anyOf" and error.absolute_path and error.absolute_path[-1] == "model":
        msg = f"config key '{_path(error)}': {error.instance!r} is not a model; a model is {SPEC_FORMS}"
    elif error.validator == "type" and isinstance(error.instance, str) and error.validator_value in ("object", "array"):
        msg += "; on the command line write a nested value as YAML, e.g. --config 'training={precision: float32}'"
    description = error.schema.get("description")
    if description and error.validator in {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "type"}:
        msg += f" ({description.strip()})"
    return msg


def _coerce_labels(config: dict[str, Any]) -> None:
    """YAML reads a bare `true` as a boolean: take it as the label mode "true"."""
    for block in config.get("grid") or []:
        if isinstance(block, dict) and isinstance(block.get("labels"), list):
            block["labels"] = ["true" if v is True else v for v in block["labels"]]


def _yaml12_scalar(text: str) -> bool | int | float | None:
    """A string as YAML 1.2 reads it when it is a boolean or a finite number ('1e-3' -> 0.001); None otherwise."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if not _NUMBER.fullmatch(text):
        return None
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def _schema_scalar(error: jsonschema.ValidationError) -> bool | int | float | None:
    """The string that failed a `type` or `enum` keyword as the number or boolean that keyword asks for; None when it
    is not one."""
    if not isinstance(error.instance, str) or error.validator not in ("type", "enum"):
        return None
    value = _yaml12_scalar(error.instance)
    if value is None:
        return None
    if error.validator == "enum":  # e.g. a kernel size: the enum's own member, never a bool standing for 1
        members = [m for m in error.validator_value if not isinstance(m, bool)]
        return next((m for m in members if not isinstance(value, bool) and m == value), None)
    types = {error.validator_value} if isinstance(error.validator_value, str) else set(error.validator_value)
    if isinstance(value, bool):
        return value if "boolean" in types else None
    if "integer" in types and float(value).is_integer():
        return int(value)
    return value if "number" in types else None


def _coerce_scalars(config: dict[str, Any], validator: jsonschema.protocols.Validator) -> None:
    """Numbers and booleans left as strings become what the schema asks for there: PyYAML (YAML 1.1) reads `1e-3`
    as a string, and Snakemake reads the values nested in a `--config` mapping as strings."""
    for error in list(validator.iter_errors(config)):
        value = _schema_scalar(error)
        if value is None or not error.absolute_path:
            continue
        *parents, last = error.absolute_path
        target = config
        for key in parents:
            target = target[key]
        target[last] = value


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None = None, *, model_checks: str | Path | None = None
) -> dict[str, Any]:
    """Validate `config` against the schema, fill defaults and cross-check names; returns the completed copy.

    Raises ConfigError with one message per problem found (the most relevant schema error first). `model_checks`
    is a folder caching the user-model checks that passed (``firstlayer.modelspec.check_grid_model``): the workflow
    passes one, so that parsing the Snakefile again builds no network; None checks every user model.
    """
    config = copy.deepcopy(dict(config))
    _coerce_labels(config)
    schema = dict(schema) if schema is not None else load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    _coerce_scalars(config, validator)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        rest = [e for e in errors if e is not best]
        lines = [_message(best)] + [_message(e) for e in rest[:4]]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    _cross_check(config, model_checks)
    return config


def _cross_check(config: dict[str, Any], model_checks: str | Path | None = None) -> None:
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
        if ("steps" in arch) == ("epochs" in arch):
            found = "both" if "steps" in arch else "neither"
            problems.append(
                f"config key 'architectures.{name}': give exactly one of 'steps' (optimiser steps) and 'epochs' "
                f"(passes over the training images); found {found}"
            )
    problems += _architecture_problems(config)
    problems += _user_model_problems(config, model_checks)
    problems += _pretrained_problems(config)
    problems += _dataset_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _trained_pairs(config: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """(architecture, dataset) pairs the grid trains, each with the first grid block that lists it (names that are
    not defined are left out: they have their own message)."""
    pairs: dict[tuple[str, str], int] = {}
    for i, block in enumerate(config["grid"]):
        for dataset in block["datasets"]:
            for arch in block["architectures"]:
                if dataset in config["datasets"] and arch in config["architectures"]:
                    pairs.setdefault((arch, dataset), i)
    return pairs


def _architecture_problems(config: dict[str, Any]) -> list[str]:
    """Each architecture against its model's registry entry: stacking, a fixed width, and its kernel size and
    minimum image size against the images of every dataset the grid trains it on."""
    problems = []
    for arch, entry in config["architectures"].items():
        model, spec = entry["model"], model_spec(entry["model"])
        if "first_layer" in entry and not is_user_model(model):
            problems.append(
                f"config key 'architectures.{arch}.first_layer': {model} is a built-in model, whose first layer is "
                f"{spec.first_layer} (firstlayer.models.MODELS); remove 'first_layer' (it is for torchvision:, timm: "
                "and your own builders)"
            )
        if entry["seeds_per_job"] > 1 and not spec.stackable:
            problems.append(
                f"config key 'architectures.{arch}.seeds_per_job': {model} trains one seed per job; several seeds "
                f"per job need a model without batch statistics: {', '.join(stackable_models())}"
            )
        if spec.fixed_width and entry.get("width", spec.default_width) != spec.default_width:
            problems.append(
                f"config key 'architectures.{arch}.width': {model} has exactly {spec.default_width} first-layer "
                "filters (its width is fixed); remove 'width' or use a model whose width can change"
            )
    for (arch, dataset), i in _trained_pairs(config).items():
        model, kernel_size = config["architectures"][arch]["model"], config["architectures"][arch].get("kernel_size")
        side = image_side(config["datasets"][dataset])
        if is_user_model(model):  # built and run on these images by _user_model_problems
            continue
        if problem := image_size_problem(model, side):
            problems.append(
                f"config key 'datasets.{dataset}.image_size': architecture '{arch}' ({model}, grid block {i}) "
                f"{problem}; raise 'image_size' or train another model on it"
            )
        elif problem := kernel_problem(model, kernel_size, side):
            problems.append(
                f"config key 'architectures.{arch}.kernel_size': {problem} of dataset '{dataset}' (grid block {i}); "
                "pick a kernel size that fits its images"
            )
    return problems


def _user_model_problems(config: dict[str, Any], model_checks: str | Path | None = None) -> list[str]:
    """Each user model (torchvision:, timm:, a file's or module's builder) imported, built with seed 0 and trained one
    step on two random images of every image side the grid trains it on (firstlayer.modelspec.check_grid_model,
    read from the `model_checks` cache when it passed before); then its first layer's module path and kernel size
    are filled in (`first_layer`, `kernel_size`): every later step reads them from the validated config. Imports
    torch only when a user model is checked."""
    users = {arch: entry for arch, entry in config["architectures"].items() if is_user_model(entry["model"])}
    if not users:
        return []
    from firstlayer.modelspec import GridModelError, check_grid_model

    sides: dict[str, dict[int, str]] = {arch: {} for arch in users}  # arch -> {image side: first dataset with it}
    for (arch, dataset), i in _trained_pairs(config).items():
        if arch in users:
            sides[arch].setdefault(image_side(config["datasets"][dataset]), f"dataset '{dataset}' (grid block {i})")
    problems = []
    for arch, entry in users.items():
        given = {k: entry.get(k) for k in ("kernel_size", "width", "first_layer")}
        try:  # an architecture the grid does not train: its import and builder's signature only
            layers = [check_grid_model(entry["model"], image_size=side, where=where, cache=model_checks, **given)
                      for side, where in (sides[arch] or {None: ""}).items()]  # fmt: skip
        except GridModelError as error:
            problems.append(f"config key 'architectures.{arch}.{error.key}': {error}")
            continue
        found = {(layer.name, layer.kernel_size) for layer in layers if layer is not None}
        if len(found) > 1:
            listed = "; ".join(
                f"{layer.description} on {where}" for where, layer in zip(sides[arch].values(), layers, strict=True)
            )
            problems.append(
                f"config key 'architectures.{arch}.first_layer': the network's first layer differs between the "
                f"image sizes it trains on ({listed}); train it on one image size per architecture"
            )
        elif found:
            ((entry["first_layer"], entry["kernel_size"]),) = found
    return problems


def _pretrained_problems(config: dict[str, Any]) -> list[str]:
    """Cross-checks of the `pretrained` section: its dataset, unique names, weights torchvision knows."""
    section = config.get("pretrained") or {}
    models = section.get("models") or []
    if not models:
        return []
    from firstlayer.modelspec import torchvision_weights  # imports torchvision: only when pretrained models are set

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
            torchvision_weights(entry["name"], entry["weights"])
        except ValueError as error:
            problems.append(f"config key 'pretrained.models.{i}.weights': {error}")
    return problems


def _dataset_problems(config: dict[str, Any]) -> list[str]:
    """Checks of the datasets that read no image: embedded photo names, the class sub-folders of the image folders
    that are used, and batch sizes against the training set sizes the config fixes."""
    used = {name for block in config["grid"] for name in block["datasets"]}
    used.add((config.get("pretrained") or {}).get("dataset"))
    problems = []
    for name, spec in config["datasets"].items():
        if spec["source"] == "embedded":
            problems += _photo_problems(name, spec.get("photos") or [])
        elif spec["source"] == "folder" and name in used:
            problems += _folder_problems(name, Path(spec["root"]).expanduser())
    return problems + _batch_size_problems(config)


def _photo_problems(name: str, photos: list[str]) -> list[str]:
    """Unknown or repeated names in an embedded dataset's `photos` (each photo is one class)."""
    from firstlayer.datasets import EMBEDDED_PHOTOS

    problems = []
    unknown = [p for p in photos if p not in EMBEDDED_PHOTOS]
    if unknown:
        problems.append(
            f"config key 'datasets.{name}.photos': unknown photo {', '.join(map(repr, unknown))}; "
            f"the embedded photos are: {', '.join(EMBEDDED_PHOTOS)}"
        )
    repeated = sorted({p for p in photos if photos.count(p) > 1})
    if repeated:
        problems.append(
            f"config key 'datasets.{name}.photos': {', '.join(map(repr, repeated))} listed more than once; "
            "list each photo once"
        )
    return problems


def _folder_problems(name: str, root: Path) -> list[str]:
    """A missing image folder, or one with fewer than two class sub-folders (one class trains to loss 0 and leaves
    meaningless tables). Lists folders only, so it is cheap on a large dataset."""
    key = f"config key 'datasets.{name}.root'"
    if not root.is_dir():
        where = root if root.is_absolute() else f"{root} (here {root.absolute()})"
        return [f"{key}: {where} is not a folder; point it at a folder with one sub-folder of images per class"]
    split = root / "train"
    has_splits = split.is_dir() and ((root / "val").is_dir() or (root / "test").is_dir())
    base = split if has_splits else root
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) >= 2:
        return []
    found = f"only one class sub-folder ({classes[0]})" if classes else "no class sub-folders"
    return [f"{key}: {base} has {found}; an image folder needs one sub-folder of images per class, at least two"]


def _batch_size_problems(config: dict[str, Any]) -> list[str]:
    """Batch sizes larger than a training set whose size the config fixes (embedded photos, CIFAR); an image
    folder's size is known only once it is read."""
    problems = []
    for (arch, dataset), i in _trained_pairs(config).items():
        spec = config["datasets"][dataset]
        sizes = config_images(spec)
        batch = config["architectures"][arch]["batch_size"]
        if sizes is None or batch <= sizes[0]:
            continue
        size_key = "train_per_class" if spec["source"] == "embedded" else "max_train"
        problems.append(
            f"config key 'architectures.{arch}.batch_size': {batch} is larger than the {sizes[0]} training images "
            f"of dataset '{dataset}' (grid block {i}); lower it to at most {sizes[0]} or raise "
            f"'datasets.{dataset}.{size_key}'"
        )
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
        from firstlayer.modelspec import first_layer_weight  # imports torchvision: only when models are set

        sizes.update(first_layer_weight(m["name"]).kernel_size for m in pretrained["models"])
    return sorted(sizes)


def image_side(spec: Mapping[str, Any]) -> int:
    """The side of a dataset's square images, in pixels (CIFAR's are 32x32)."""
    return spec.get("image_size", 32)


def config_images(spec: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(training images, test images, image side) as a dataset's config entry fixes them; None for an image folder
    (its size is known once it is read)."""
    from firstlayer.datasets import EMBEDDED_PHOTOS, POLARITY_CLASSES, ROTATION_CLASSES

    side = image_side(spec)
    if spec["source"] == "embedded":
        photos = len(spec.get("photos") or EMBEDDED_PHOTOS)
        # photo, texture: one class per photo; rotation and polarity: their own classes
        classes = {"rotation": len(ROTATION_CLASSES), "polarity": len(POLARITY_CLASSES)}.get(spec["labels"], photos)
        return classes * spec["train_per_class"], classes * spec["test_per_class"], side
    if spec["source"] in ("cifar10", "cifar100"):
        return spec.get("max_train") or 50_000, spec.get("max_test") or 10_000, side
    return None


def iter_datasets(config: Mapping[str, Any]) -> Iterator[str]:
    """Datasets used by at least one run (unused entries are not prepared)."""
    seen: dict[str, None] = {r.dataset: None for r in expand_grid(config)}
    yield from seen
