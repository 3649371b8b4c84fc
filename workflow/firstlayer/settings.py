"""What a training run is asked to do: its settings (defaults from the config schema), the schedules of snapshots
and evaluations, and the independent seeds its one seed fans out into."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firstlayer.config import non_result_settings, schema_default

#: Label modes: true labels; a seeded permutation of them; true labels with the first layer frozen at its init.
LABEL_MODES = ("true", "random", "frozen")


def _default(section: str, key: str) -> Any:
    """A field default read from the config schema, the one home of the defaults."""
    return field(default_factory=lambda: schema_default(section, key))


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and schedule of one run (one architecture entry of the config plus the run's keys); unset fields
    take the config schema's defaults."""

    steps: int
    lr: float
    labels: str = "true"
    seed: int = 0
    snapshot_steps: tuple[int, ...] = ()
    eval_steps: tuple[int, ...] = ()
    batch_size: int = _default("architecture", "batch_size")
    optimizer: str = _default("architecture", "optimizer")
    momentum: float = _default("architecture", "momentum")
    weight_decay: float = _default("architecture", "weight_decay")
    #: Random crop (reflect-pad ``augment.CROP_PAD`` px, random window) and horizontal flip of every training batch.
    augment: bool = _default("architecture", "augment")
    train_eval_size: int = _default("training", "train_eval_size")
    eval_batch_size: int = _default("training", "eval_batch_size")
    device: str = _default("training", "device")
    #: ``torch.compile`` the training forward (for GPUs: on a CPU the compile time rarely pays for itself).
    compile: bool = _default("training", "compile")
    #: One of ``PRECISIONS``, for the layers above the first (which is float32 whatever this says).
    precision: str = _default("training", "precision")
    #: Steps between progress lines (and divergence checks); does not change the result.
    log_every: int = _default("training", "log_every")
    #: Module path of a user model's first layer (the validated architecture's `first_layer`); None: the registry's.
    first_layer: str | None = None

    def __post_init__(self) -> None:
        """Refuse a label mode the loop does not know."""
        if self.labels not in LABEL_MODES:
            raise ValueError(f"unknown label mode {self.labels!r}; allowed: {', '.join(LABEL_MODES)}")

    @classmethod
    def from_config(cls, job: Mapping[str, Any], n_train: int, log_every: int | None = None) -> TrainSettings:
        """The settings of a workflow training job: `job` is the rule's validated ``settings`` (dataset, arch,
        labels, seeds, architecture, snapshots, training without its non-result settings), `n_train` its number
        of training images, `log_every` from the config (None: the schema's default)."""
        arch, training = job["architecture"], job["training"]
        steps = resolve_steps(arch.get("steps"), arch.get("epochs"), n_train, arch["batch_size"])
        optimiser = {k: arch[k] for k in ("lr", "batch_size", "optimizer", "momentum", "weight_decay", "augment")}
        run = {k: training[k] for k in ("train_eval_size", "eval_batch_size", "device", "compile", "precision")}
        return cls(
            steps=steps,
            labels=job["labels"],
            seed=job["seeds"][0],
            snapshot_steps=log_schedule(steps, job["snapshots"]["count"]),
            eval_steps=log_schedule(steps, arch.get("eval_points", training["eval_points"])),
            log_every=schema_default("training", "log_every") if log_every is None else log_every,
            first_layer=arch.get("first_layer"),
            **optimiser,
            **run,
        )


def result_fields(s: TrainSettings) -> dict[str, Any]:
    """The fields of `s` that a run's result depends on: all but the config's non-result settings (log_every)."""
    return {k: v for k, v in dataclasses.asdict(s).items() if k not in non_result_settings()["training"]}


def log_schedule(steps: int, count: int) -> tuple[int, ...]:
    """Step 0, `count` log-spaced steps in [1, steps], and `steps` itself, sorted and unique."""
    logspaced = np.geomspace(1, steps, num=count) if count > 0 else np.zeros(0)
    return tuple(sorted({0, steps, *np.unique(np.round(logspaced).astype(int)).tolist()}))


def seed_streams(seed: int) -> dict[str, int]:
    """Independent integer seeds for the init, the batch order, the random labels, the eval subset and the
    augmentation. New streams go at the end: ``SeedSequence.spawn`` children keep their keys, so the others stay."""
    names = ("init", "order", "labels", "eval", "augment")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, dtype=np.uint64)[0] % (2**63)) for n, c in zip(names, children, strict=True)}


def resolve_steps(steps: int | None, epochs: int | None, n_train: int, batch_size: int) -> int:
    """Optimiser steps of a run given `steps`, or `epochs` passes over `n_train` images in full batches (the last
    partial batch of an epoch is dropped, as the training loop does)."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    if steps is not None:
        return int(steps)
    return int(epochs) * (n_train // min(batch_size, n_train))
