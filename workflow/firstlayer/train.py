"""Training, the airbench way: the dataset is one uint8 tensor on the device, batches are slices of seeded
permutations, no DataLoader and no host sync in the step loop; first-layer snapshots at chosen steps.

One loop (``_run``) owns the bookkeeping (labels, batch order, augmentation, schedules, checkpoints, progress, the
divergence check); a stepper does the steps: ``train`` one module, ``train_seeds`` several seeds stacked. The first
layer always computes in float32 (docs/method.md, Training precision)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import signal
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from firstlayer.config import schema_default
from firstlayer.datasets import PreparedDataset, channel_stats
from firstlayer.models import build_model, first_layer, model_spec, stackable_models
from firstlayer.patches import normalise

#: Label modes: true labels; a seeded permutation of them; true labels with the first layer frozen at its init.
LABEL_MODES = ("true", "random", "frozen")

#: Exit status of a training job stopped by a signal after saving its checkpoint (EX_TEMPFAIL: retry later).
INTERRUPTED_EXIT_CODE = 75

#: Pixels of reflected border for the random-crop augmentation: a translation of up to this many pixels.
CROP_PAD = 4

#: ``TrainSettings.precision`` values: bfloat16 autocast above the first layer where the device computes it natively
#: (a CUDA GPU with bfloat16, a CPU with AVX512-BF16 or AMX), else float32; float32 throughout; bfloat16 always.
PRECISIONS = ("auto", "float32", "bfloat16")


def _is_linear(model_name: str) -> bool:
    """A network linear in its input: it trains in float32 and steps in input space (``_linear_stacked``)."""
    return model_spec(model_name).linear


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
    #: Random crop (reflect-pad ``CROP_PAD`` px, random window) and horizontal flip of every training batch.
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

    @classmethod
    def from_config(cls, job: Mapping[str, Any], n_train: int) -> TrainSettings:
        """The settings of a workflow training job: `job` is the rule's validated ``settings`` (dataset, arch,
        labels, seeds, architecture, snapshots, training), `n_train` its number of training images."""
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
            log_every=training["log_every"],
            first_layer=arch.get("first_layer"),
            **optimiser,
            **run,
        )


@dataclass
class TrainResult:
    """First-layer weights (K, c, k, k) per snapshot step (step 0 = init), and tidy metrics (step, metric, value)."""

    snapshots: dict[int, torch.Tensor]
    metrics: pd.DataFrame
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    #: The precision the run computed in above its first layer ("float32" or "bfloat16"), as resolved.
    precision: str = "float32"


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


def random_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """(n,) labels -> a seeded permutation of them: same class counts, no relation to the images."""
    g = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(labels.shape[0], generator=g)]


def init_model(
    model_name: str,
    *,
    num_classes: int,
    kernel_size: int,
    width: int | None,
    image_size: int,
    seed: int,
    init_scale: float = 1.0,
    first_layer_path: str | None = None,
) -> nn.Module:
    """A network whose initial weights depend on `seed` alone (torch's global RNG is forked and restored).

    The first layer's weights (and bias) are multiplied by `init_scale` right after the default init: a small
    scale approaches the small-init regime of the linear theory (docs/method.md, The linear-systems formula).
    `first_layer_path` names a user model's first layer (``TrainSettings.first_layer``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(
            model_name, num_classes=num_classes, kernel_size=kernel_size, width=width, image_size=image_size
        )
    if init_scale != 1.0:
        with torch.no_grad():
            for p in first_layer(model, model_name, first_layer_path).parameters():
                p.mul_(init_scale)
    return model


def resolve_steps(steps: int | None, epochs: int | None, n_train: int, batch_size: int) -> int:
    """Optimiser steps of a run given `steps`, or `epochs` passes over `n_train` images in full batches (the last
    partial batch of an epoch is dropped, as ``_Batches`` does)."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    if steps is not None:
        return int(steps)
    return int(epochs) * (n_train // min(batch_size, n_train))


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices in [-(n-1), 2(n-1)] mirrored into [0, n) without repeating the edge (``F.pad``'s 'reflect')."""
    return (n - 1) - ((n - 1) - i.abs()).abs()


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """(b, c, h, w) images -> the same shape: per image, the crop of the reflect-padded image at a random offset
    (a shift of up to +-`pad` px) then a horizontal flip with probability 1/2. Two gathers on `x`'s device, no
    per-image loop; the draws come from `generator` (on that device) alone."""
    b, c, h, w = x.shape
    if pad >= min(h, w):
        raise ValueError(f"cannot reflect-pad {h}x{w} images by {pad} pixels (pad must be below the image side)")
    shift = torch.randint(-pad, pad + 1, (2, b, 1), generator=generator, device=x.device)
    flip = torch.randint(0, 2, (b, 1), generator=generator, device=x.device).bool()
    rows = _reflect(torch.arange(h, device=x.device) + shift[0], h)  # (b, h) source row of each output row
    cols = torch.arange(w, device=x.device)
    cols = _reflect(torch.where(flip, w - 1 - cols, cols) + shift[1], w)  # (b, w): flipping reads the crop backwards
    x = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w))
    return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def _augment_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error a user can fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX
    (elsewhere oneDNN emulates bfloat16, slower than float32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 had no emulation to exclude
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def resolve_precision(name: str, device: torch.device, model_name: str) -> torch.dtype | None:
    """``TrainSettings.precision`` -> the autocast dtype above the first layer (None: float32 throughout).

    The linear CNN always trains in float32: everything it computes is its first layer (``train_seeds`` folds its
    readout into the filters, in input space), so there is nothing above it to round."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; allowed: {', '.join(PRECISIONS)}")
    if _is_linear(model_name) or name == "float32" or (name == "auto" and not native_bfloat16(device)):
        return None
    return torch.bfloat16


def precision_name(amp: torch.dtype | None) -> str:
    """What ``resolve_precision`` gave, in words: "float32" or "bfloat16"."""
    return "float32" if amp is None else str(amp).removeprefix("torch.")


def _autocast(device: torch.device, amp: torch.dtype | None) -> torch.autocast:
    """The autocast of a training step: to `amp` where ``resolve_precision`` gave one, else off."""
    return torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None)


def describe_precision(amp: torch.dtype | None) -> str:
    """What a run computes in, in words, for its log."""
    return "float32 throughout" if amp is None else f"{precision_name(amp)} above a float32 first layer"


#: Flags that let CUDA substitute TF32 (10-bit mantissa) for float32: cuDNN convolutions and cuBLAS matmuls.
_TF32_FLAGS = ((torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32"))


@contextlib.contextmanager
def float32_first_layer(conv: nn.Module | None) -> Iterator[None]:
    """Inside, `conv` computes in float32 with autocast off, and CUDA substitutes no TF32 for float32 (cuDNN
    convolutions, cuBLAS matmuls): the layer whose filters are measured is never rounded below float32. Layers
    above it keep whatever autocast the caller set. The backward of a convolution reads the TF32 flags when it runs,
    so they stay off for the whole scope. The forward is wrapped as a method bound to `conv` (a copy made inside
    the scope wraps the copy) and whatever instance forward it had before is put back on exit, as are the flags.
    With `conv` None only the TF32 flags are set."""
    saved_flags = [(owner, name, getattr(owner, name)) for owner, name in _TF32_FLAGS]
    previous = vars(conv).get("forward") if conv is not None else None  # an instance forward set before
    try:
        for owner, name, _ in saved_flags:
            setattr(owner, name, False)
        if conv is not None:
            inner = previous if previous is not None else type(conv).forward.__get__(conv)

            def forward(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
                with torch.autocast(x.device.type, enabled=False):
                    return (inner if self is conv else type(self).forward.__get__(self))(x.float(), *args, **kwargs)

            conv.forward = types.MethodType(forward, conv)  # type: ignore[method-assign]
        yield
    finally:
        try:
            if conv is not None:
                if previous is not None:
                    conv.forward = previous  # type: ignore[method-assign]
                else:
                    vars(conv).pop("forward", None)
        finally:
            for owner, name, value in saved_flags:
                setattr(owner, name, value)


def _optimizer(params: Sequence[torch.Tensor], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    raise ValueError(f"unknown optimizer {s.optimizer!r}; allowed: sgd, adam")


class _Batches:
    """Index batches from seeded per-epoch permutations (the last partial batch of an epoch is dropped)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.bs, self.device = n, min(batch_size, n), device
        self.g = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.empty(0, dtype=torch.long), n

    def state(self) -> dict[str, Any]:
        """Everything the next batches depend on: the generator, the epoch's permutation and the position in it."""
        return {"generator": self.g.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.g.set_state(state["generator"])
        self.perm, self.pos = state["perm"].to(self.device), int(state["pos"])

    def next(self) -> torch.Tensor:
        if self.pos + self.bs > self.perm.shape[0]:
            self.perm = torch.randperm(self.n, generator=self.g).to(self.device, non_blocking=True)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.bs]
        self.pos += self.bs
        return idx


# ------------------------------------------------------------------------ stopping and resuming


class StopFlag:
    """Asks a training loop to save its checkpoint and stop at the next step boundary. Signal handlers only set
    it; the loop reads a plain attribute (no host sync)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None

    def request(self, signum: int | None = None) -> None:
        self.requested, self.signal = True, signum


@contextlib.contextmanager
def stop_on_signals(signums: Sequence[int] = (signal.SIGTERM, signal.SIGUSR1)) -> Iterator[StopFlag]:
    """A StopFlag set by any of `signums` (SLURM sends SIGTERM before a time limit or preemption, or SIGUSR1 with
    ``--signal``) while the block runs; the previous handlers are restored after it. Main thread only."""
    flag = StopFlag()
    previous = {signum: signal.signal(signum, lambda signum, _frame: flag.request(signum)) for signum in signums}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class TrainingInterrupted(RuntimeError):
    """Training stopped on request after `step` steps; its progress is in `checkpoint` (None: nowhere to save)."""

    def __init__(self, step: int, checkpoint: Path | None, signum: int | None) -> None:
        cause = signal.Signals(signum).name if signum is not None else "a stop request"
        saved = f"progress saved to {checkpoint}" if checkpoint is not None else "no checkpoint path, progress lost"
        super().__init__(f"training stopped by {cause} after step {step}; {saved}")
        self.step, self.checkpoint, self.signal = step, checkpoint, signum


def run_digest(*parts: Any) -> str:
    """A hash of what a run's result depends on: tensors and arrays by dtype, shape and bytes, mappings and
    sequences item by item, anything else as JSON."""
    h = hashlib.sha256()

    def add(part: Any) -> None:
        if isinstance(part, np.ndarray):
            part = torch.from_numpy(np.ascontiguousarray(part))
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(f"tensor{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.flatten().view(torch.uint8).numpy())
        elif isinstance(part, Mapping):
            h.update(f"mapping{len(part)}".encode())
            for key in sorted(part, key=str):
                add(str(key))
                add(part[key])
        elif isinstance(part, list | tuple):
            h.update(f"sequence{len(part)}".encode())
            for item in part:
                add(item)
        else:
            h.update(json.dumps(part, default=str).encode())

    add(parts)
    return h.hexdigest()


class _Checkpoints:
    """Saves a run's progress to `path` every `minutes` (0: never by time) and before stopping on `stop`.

    A checkpoint of other settings, data or init (another `digest`), or an unreadable one, is not resumed: a
    warning is logged, the run starts afresh and overwrites it at its next save. (The job's parameters changed, so
    its old progress is worthless; refusing would only make the user delete the file by hand.)"""

    def __init__(
        self,
        path: str | Path | None,
        minutes: float,
        stop: StopFlag | None,
        digest: Callable[[], str],
        log: Callable[[str], None],
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.interval = minutes * 60 if self.path is not None and minutes > 0 else math.inf
        self.stop, self.log = stop, log
        self.digest = digest() if self.path is not None else ""
        self.next_save = time.monotonic() + self.interval

    def load(self) -> dict[str, Any] | None:
        """The saved progress of this run, or None (no file, or not this run's)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # any unreadable file means: start afresh
            self.log(f"warning: cannot read checkpoint {self.path} ({error}); starting afresh")
            return None
        if not isinstance(state, dict) or state.get("digest") != self.digest:
            self.log(f"warning: checkpoint {self.path} is from other settings, data or init; starting afresh")
            return None
        self.log(f"resuming from checkpoint {self.path} after step {state['step']}")
        return state

    def boundary(self, step: int, progress: Callable[[], dict[str, Any]]) -> None:
        """Between steps `step` and `step` + 1: save when due or asked to stop; then stop if asked."""
        stopping = self.stop is not None and self.stop.requested
        if stopping or time.monotonic() >= self.next_save:
            if self.path is not None:
                self.save(step, progress())
            if stopping:
                raise TrainingInterrupted(step, self.path, self.stop.signal)

    def save(self, step: int, state: dict[str, Any]) -> None:
        """Write atomically: a temporary file beside the checkpoint, then ``os.replace``."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        torch.save({**state, "digest": self.digest, "step": step}, tmp)
        os.replace(tmp, self.path)
        self.next_save = time.monotonic() + self.interval
        self.log(f"checkpoint saved after step {step}: {self.path}")


def _check_labels(labels: str) -> None:
    if labels not in LABEL_MODES:
        raise ValueError(f"unknown label mode {labels!r}; allowed: {', '.join(LABEL_MODES)}")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: nothing trained from here on is a result."""


def _train_metrics(
    losses: np.ndarray, evals: Mapping[int, tuple[int, int]], eval_size: int, test_size: int
) -> pd.DataFrame:
    """(steps,) losses and {step: (correct train-subset images, correct test images)} -> tidy metrics."""
    rows = [(i + 1, "loss", float(v)) for i, v in enumerate(losses)]
    for step, (c_train, c_test) in sorted(evals.items()):
        rows.append((step, "train_accuracy", c_train / eval_size))
        rows.append((step, "test_accuracy", c_test / test_size))
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


# ------------------------------------------------------------------------ the steppers: what one training step does


class _Stepper:
    """The pluggable part of the training loop: N seeds' parameters and optimiser, one step, evaluation, state.

    Images come as float (N, b, c, h, w), one batch per seed, or (b, c, h, w) shared by every seed (the test split);
    labels as (N, b) or (b,)."""

    n: int
    amp: torch.dtype | None
    device: torch.device
    first_layer: nn.Module | None  # the module ``float32_first_layer`` wraps (None: the forward calls no module)
    channels_last: bool

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on every seed's batch -> (N,) losses and (N,) correctly classified images."""
        raise NotImplementedError

    def correct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N,) correctly classified images of one evaluation batch, in float32."""
        raise NotImplementedError

    def first_weight(self) -> torch.Tensor:
        """(N, K, c, k, k) first-layer weights, a copy."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """channels_last per image where the forward wants it (same values: only the layout changes)."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.flatten(0, -4).contiguous(memory_format=fmt).view(x.shape)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).sum(-1)


class _ModuleStepper(_Stepper):
    """One network trained through its own module (the linear CNN through its input-space forward)."""

    def __init__(self, model: nn.Module, model_name: str, s: TrainSettings, device: torch.device, amp: Any) -> None:
        self.n, self.amp, self.device = 1, amp, device
        self.channels_last = (device.type == "cuda" or amp is not None) and not _is_linear(model_name)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=fmt)
        self.model.train()
        self.first_layer = first_layer(self.model, model_name, s.first_layer)
        if s.labels == "frozen":  # not in the optimiser either: no weight decay, no momentum
            self.first_layer.requires_grad_(False)
        self.opt = _optimizer([p for p in self.model.parameters() if p.requires_grad], s)
        forward = _linear_input_space(self.model) if _is_linear(model_name) else self.model
        self.forward = torch.compile(forward) if s.compile else forward

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _autocast(self.device, self.amp):
            logits = self.forward(self._memory_format(x)[0])
            loss = F.cross_entropy(logits, y[0])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach().unsqueeze(0), _correct(logits.detach(), y[0]).unsqueeze(0)

    @torch.no_grad()
    def correct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        x, y = (x, y) if y.dim() == 1 else (x[0], y[0])
        count = _correct(self.model(self._memory_format(x)), y)
        self.model.train(was_training)
        return count.unsqueeze(0)

    def first_weight(self) -> torch.Tensor:
        return self.first_layer.weight.detach().clone().unsqueeze(0)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])


class _StackedStepper(_Stepper):
    """Several seeds of one network, their parameters stacked (N, *shape) under one optimiser (SGD and Adam act
    elementwise: N optimisers). The linear CNN runs every seed in one graph, in input space; other models run each
    seed's module forward and backward in turn on its slices of the stacked parameters (as fast on a CPU, with one
    seed's activations alive)."""

    def __init__(
        self, models: Sequence[nn.Module], model_name: str, s: TrainSettings, device: torch.device, amp: Any
    ) -> None:
        if next(models[0].buffers(), None) is not None:
            raise ValueError(f"cannot train seeds of {model_name!r} together: it has buffers (BatchNorm statistics?)")
        self.n, self.amp, self.device = len(models), amp, device
        frozen = {id(p) for p in first_layer(models[0], model_name).parameters()} if s.labels == "frozen" else set()
        self.params = {
            name: nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in models]).to(device),
                               requires_grad=id(p) not in frozen)
            for name, p in models[0].named_parameters()
        }  # fmt: skip
        self.first = f"{model_spec(model_name).first_layer}.weight"
        self.opt = _optimizer([p for p in self.params.values() if p.requires_grad], s)
        if _is_linear(model_name):
            _check_bias_free_linear(models[0])
            self.logits, self.seed_logits, self.first_layer = _linear_stacked, None, None
        else:
            base = copy.deepcopy(models[0]).to("meta")  # the module's forward, parameters passed by functional_call
            self.seed_logits = lambda params, x: functional_call(base, params, (x,))
            self.logits, self.first_layer = self._each_seed, first_layer(base, model_name)
        self.channels_last = self.seed_logits is not None and (device.type == "cuda" or amp is not None)
        forward = self.seed_logits or self.logits
        self.forward = torch.compile(forward) if s.compile else forward

    def _each_seed(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        assert self.seed_logits is not None
        per_seed = [self.seed_logits({k: v[i] for k, v in params.items()}, x if x.dim() == 4 else x[i])
                    for i in range(self.n)]  # fmt: skip
        return torch.stack(per_seed)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._memory_format(x)
        self.opt.zero_grad(set_to_none=True)
        if self.seed_logits is None:  # all seeds in one graph: the sum of the seeds' mean losses
            with _autocast(self.device, self.amp):
                logits = self.forward(self.params, x)
                losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
            losses.sum().backward()
            correct = _correct(logits.detach(), y)
        else:  # seed by seed: each backward adds the seed's gradient to its slice of the stacked .grad
            per_seed, counts = [], []
            for i in range(self.n):
                with _autocast(self.device, self.amp):
                    logits = self.forward({k: v[i] for k, v in self.params.items()}, x[i])
                    loss = F.cross_entropy(logits, y[i])
                loss.backward()
                per_seed.append(loss.detach())
                counts.append(_correct(logits.detach(), y[i]))
            losses, correct = torch.stack(per_seed), torch.stack(counts)
        self.opt.step()
        return losses.detach(), correct

    @torch.no_grad()
    def correct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _correct(self.logits(self.params, self._memory_format(x)), y)

    def first_weight(self) -> torch.Tensor:
        return self.params[self.first].detach().clone()

    def state(self) -> dict[str, Any]:
        return {"params": {k: v.detach() for k, v in self.params.items()}, "optimizer": self.opt.state_dict()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(state["params"][name])
        self.opt.load_state_dict(state["optimizer"])


# ------------------------------------------------------------------------ the training loop


@dataclass
class _Progress:
    """What the loop has made so far: snapshots, accuracies, per-step losses; saved in checkpoints."""

    snapshots: dict[int, torch.Tensor]
    evals: dict[int, tuple[torch.Tensor, torch.Tensor]]
    losses: torch.Tensor  # (steps, N)
    seconds: float = 0.0
    step: int = 0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Reporter:
    """Progress lines every ``log_every`` steps (one host sync each, none per step), and the divergence check that
    rides on the same sync: a non-finite loss stops the run."""

    def __init__(
        self, s: TrainSettings, seeds: Sequence[int], batch: int, log: Callable[[str], None], start: int, device: Any
    ) -> None:
        """Reports of a loop that starts after step `start` (0, or where a resumed run left off)."""
        self.s, self.seeds, self.batch, self.log = s, list(seeds), batch, log
        self.every = max(1, s.log_every)
        self.last = self.start = start
        self.correct = torch.zeros(len(seeds), dtype=torch.long, device=device)  # right answers since the last line
        self.t0 = self.t_last = time.perf_counter()

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.s.steps

    def report(self, step: int, losses: torch.Tensor) -> None:
        window = losses[self.last : step]  # (m, N)
        finite = torch.isfinite(window).all()
        summary = torch.stack([finite.float(), window.mean(), self.correct.sum().float()]).tolist()  # the one sync
        if not summary[0]:
            self.diverged(losses, self.last)
        now, m = time.perf_counter(), step - self.last
        rate = m * self.batch * len(self.seeds) / max(now - self.t_last, 1e-9)
        eta = (now - self.t0) / (step - self.start) * (self.s.steps - step)
        acc = summary[2] / (m * self.batch * len(self.seeds))
        seeds = f" ({len(self.seeds)} seeds)" if len(self.seeds) > 1 else ""
        self.log(f"step {step}/{self.s.steps}{seeds}  loss {summary[1]:.4f}  train acc {acc:.3f} (running batches)  "
                 f"{rate:,.0f} images/s  elapsed {_duration(now - self.t0)}  ETA {_duration(eta)}")  # fmt: skip
        self.last, self.t_last = step, now
        self.correct.zero_()

    def diverged(self, losses: torch.Tensor, first: int) -> None:
        bad = (~torch.isfinite(losses[first:])).nonzero()[0].tolist()
        step, seed = first + bad[0] + 1, self.seeds[bad[1]]
        value = float(losses[step - 1, bad[1]])
        raise TrainingDiverged(
            f"training diverged: the loss of seed {seed} became {value} at step {step} of {self.s.steps} "
            f"({self.s.optimizer}, lr {self.s.lr:g}); lower the learning rate (e.g. lr: {self.s.lr / 10:g}) or the "
            "init_scale, and rerun. No table is written from a diverged run."
        )


def _check_finite(progress: _Progress, reporter: _Reporter) -> None:
    """The end-of-run check: every loss and every snapshot finite (a resumed run's earlier steps included)."""
    if not bool(torch.isfinite(progress.losses).all()):
        reporter.diverged(progress.losses, 0)
    bad = [step for step, w in progress.snapshots.items() if not bool(torch.isfinite(w).all())]
    if bad:
        raise TrainingDiverged(f"training diverged: the first-layer weights are not finite at steps {bad}")


def _run(
    stepper: _Stepper,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor],
    mean: np.ndarray,
    std: np.ndarray,
    s: TrainSettings,
    seeds: Sequence[int],
    ckpt: _Checkpoints,
    log: Callable[[str], None],
) -> list[TrainResult]:
    """The one training loop: each seed's labels, batch order, augmentation and eval subset; snapshots and
    accuracies on schedule; checkpoints; progress and divergence checks. `stepper` does the steps."""
    device, n = stepper.device, len(seeds)
    streams = [seed_streams(seed) for seed in seeds]
    x_train, y_true = train_data
    x_test, y_test = test_data
    ys = [random_labels(y_true, st["labels"]) if s.labels == "random" else y_true for st in streams]
    eval_idx = torch.stack(
        [torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(st["eval"])) for st in streams]
    )[:, : s.train_eval_size].to(device)
    x_train, y_train = x_train.to(device), torch.stack(ys).to(device)  # labels (N, n): one row per seed
    x_test, y_test = x_test.to(device), y_test.to(device)
    x_eval, y_eval = x_train[eval_idx], y_train.gather(1, eval_idx)  # (N, E, c, h, w), (N, E)
    mean_t, std_t = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    batches = [_Batches(x_train.shape[0], s.batch_size, st["order"], device) for st in streams]
    augment = [_augment_generator(st["augment"], device) for st in streams] if s.augment else []
    rows = torch.arange(n, device=device).unsqueeze(1)
    if batches[0].bs < s.batch_size:
        log(f"warning: batch_size {s.batch_size} is larger than the {x_train.shape[0]} training images: every "
            f"step is a full batch of {batches[0].bs} (the effective batch size, in the metrics table)")  # fmt: skip

    def prep(x: torch.Tensor) -> torch.Tensor:
        return normalise(x, mean_t, std_t, torch.float32)

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        train_subset = _count_correct(stepper, prep, x_eval, y_eval, s.eval_batch_size)
        return train_subset, _count_correct(stepper, prep, x_test, y_test, s.eval_batch_size)

    with float32_first_layer(stepper.first_layer):
        progress = _resume(ckpt, stepper, batches, augment, device)
        if progress is None:
            progress = _Progress({0: stepper.first_weight()}, {0: evaluate()}, torch.zeros(s.steps, n, device=device))
        reporter = _Reporter(s, seeds, batches[0].bs, log, progress.step, device)
        t0, seconds = time.perf_counter(), progress.seconds

        def saved() -> dict:  # built only when a checkpoint is written
            return _state(progress, stepper, batches, augment, seconds + time.perf_counter() - t0)

        for step in range(progress.step + 1, s.steps + 1):
            ckpt.boundary(step - 1, saved)
            idx = torch.stack([b.next() for b in batches])  # (N, bs): each seed's own batch order
            images = x_train[idx]
            if augment:  # each seed's batch with its own generator
                images = torch.stack([augment_batch(images[i], g) for i, g in enumerate(augment)])
            loss, right = stepper.step(prep(images), y_train[rows, idx])
            progress.losses[step - 1], progress.step = loss, step
            reporter.correct += right
            if step in s.snapshot_steps or step == s.steps:
                progress.snapshots[step] = stepper.first_weight()
            if step in s.eval_steps or step == s.steps:
                progress.evals[step] = evaluate()
            if reporter.due(step):
                reporter.report(step, progress.losses)
        elapsed = time.perf_counter() - t0
    _check_finite(progress, reporter)
    return _results(progress, seeds, s, x_eval.shape[1], x_test.shape[0], batches[0].bs, seconds + elapsed,
                    (s.steps - reporter.start) * batches[0].bs * n / max(elapsed, 1e-9), stepper)  # fmt: skip


def _count_correct(
    stepper: _Stepper, prep: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int
) -> torch.Tensor:
    """(N,) correctly classified images of uint8 `x`, per seed (N, n, ...) or shared (n, ...), in float32 (bfloat16
    logits tie more often), `batch` images at a time."""
    shared = y.dim() == 1
    counts = torch.zeros(stepper.n, dtype=torch.long, device=x.device)
    for i in range(0, x.shape[0 if shared else 1], batch):
        part = slice(i, i + batch)
        counts += stepper.correct(*((prep(x[part]), y[part]) if shared else (prep(x[:, part]), y[:, part])))
    return counts


def _state(
    progress: _Progress, stepper: _Stepper, batches: list[_Batches], augment: list[torch.Generator], seconds: float
) -> dict:
    """Everything a resumed run needs (the loop draws from no global RNG: these generators are all there is)."""
    return {**stepper.state(), "order": [b.state() for b in batches], "augment": [g.get_state() for g in augment],
            "snapshots": progress.snapshots, "evals": progress.evals, "losses": progress.losses,
            "seconds": seconds}  # fmt: skip


def _resume(
    ckpt: _Checkpoints, stepper: _Stepper, batches: list[_Batches], augment: list[torch.Generator], device: Any
) -> _Progress | None:
    """The progress saved in this run's checkpoint, loaded into `stepper`, `batches` and `augment`; None if none."""
    state = ckpt.load()
    if state is None:
        return None
    stepper.load_state(state)
    for b, saved in zip(batches, state["order"], strict=True):
        b.load_state(saved)
    for g, saved in zip(augment, state["augment"], strict=True):
        g.set_state(saved)
    snapshots = {k: v.to(device) for k, v in state["snapshots"].items()}
    evals = {k: (a.to(device), b.to(device)) for k, (a, b) in state["evals"].items()}
    return _Progress(snapshots, evals, state["losses"].to(device), float(state["seconds"]), int(state["step"]))


def _results(
    progress: _Progress,
    seeds: Sequence[int],
    s: TrainSettings,
    eval_size: int,
    test_size: int,
    batch: int,
    seconds: float,
    rate: float,
    stepper: _Stepper,
) -> list[TrainResult]:
    """One TrainResult per seed from the loop's progress."""
    losses = progress.losses.float().cpu().numpy()
    counts = {step: (a.cpu().numpy(), b.cpu().numpy()) for step, (a, b) in progress.evals.items()}
    snaps = {step: w.float().cpu() for step, w in sorted(progress.snapshots.items())}
    extra = {"images_per_second": rate, "seeds": float(len(seeds)), "batch_size": float(batch)}
    precision = precision_name(stepper.amp)
    results = []
    for i in range(len(seeds)):
        counts_i = {step: (int(a[i]), int(b[i])) for step, (a, b) in counts.items()}
        metrics = _train_metrics(losses[:, i], counts_i, eval_size, test_size)
        snaps_i = {k: w[i].clone().contiguous() for k, w in snaps.items()}
        results.append(TrainResult(snaps_i, metrics, seconds, dict(extra), precision))
    return results


def train(
    model: nn.Module,
    model_name: str,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor],
    mean: np.ndarray,
    std: np.ndarray,
    settings: TrainSettings,
    *,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    checkpoint_minutes: float = 10.0,
    stop: StopFlag | None = None,
) -> TrainResult:
    """Train `model` (built by ``model_name``'s builder) on uint8 images (n, c, h, w) with int64 labels; snapshot
    its first layer at step 0 and ``snapshot_steps``, accuracies at step 0 and ``eval_steps`` (both at the end).

    Labels: ``'random'`` permutes the training labels by the run's seed (test labels stay true); ``'frozen'``
    keeps the first layer at its init. With a `checkpoint` path progress is saved every `checkpoint_minutes` (0: only
    when stopping) and when `stop` is requested (then ``TrainingInterrupted``); a later call resumes it, bitwise on a
    CPU. A non-finite loss raises ``TrainingDiverged``. The model is left on the device, in the layout it trained in."""
    s = settings
    _check_labels(s.labels)
    device = resolve_device(s.device)
    amp = resolve_precision(s.precision, device, model_name)
    x_train, y_train = train_data
    parts = ("train", model_name, _hashed(s), str(amp), model.state_dict(), x_train, y_train, *test_data, mean, std)
    ckpt = _Checkpoints(checkpoint, checkpoint_minutes, stop, lambda: run_digest(*parts), log)
    stepper = _ModuleStepper(model, model_name, s, device, amp)
    log(f"precision: {describe_precision(amp)} ({s.precision!r} on {device.type})")
    return _run(stepper, train_data, test_data, mean, std, s, [s.seed], ckpt, log)[0]


def train_seeds(
    model_name: str,
    model_kwargs: Mapping[str, Any],
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor],
    mean: np.ndarray,
    std: np.ndarray,
    settings: TrainSettings,
    seeds: Sequence[int],
    *,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    checkpoint_minutes: float = 10.0,
    stop: StopFlag | None = None,
) -> list[TrainResult]:
    """Train one network per seed at once; result i is what ``train`` gives seed ``seeds[i]`` (to float rounding):
    ``train(init_model(model_name, seed=s, **model_kwargs), model_name, ..., replace(settings, seed=s))``.

    ``model_kwargs`` are ``init_model``'s keywords but ``seed``; ``settings.seed`` is ignored. ``seconds`` and
    ``extra['images_per_second']`` are those of the whole run; one checkpoint holds every seed."""
    s = settings
    if not model_spec(model_name).stackable:
        stackable = ", ".join(stackable_models())
        raise ValueError(f"train_seeds cannot stack {model_name!r}; stackable models: {stackable}")
    _check_labels(s.labels)
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("train_seeds needs at least one seed")
    device = resolve_device(s.device)
    amp = resolve_precision(s.precision, device, model_name)
    models = [init_model(model_name, seed=seed, **model_kwargs) for seed in seeds]
    stepper = _StackedStepper(models, model_name, s, device, amp)
    parts = ("train_seeds", model_name, dict(model_kwargs), seeds, _hashed(dataclasses.replace(s, seed=0)), str(amp),
             stepper.params, *train_data, *test_data, mean, std)  # fmt: skip
    ckpt = _Checkpoints(checkpoint, checkpoint_minutes, stop, lambda: run_digest(*parts), log)
    log(f"precision: {describe_precision(amp)} ({s.precision!r} on {device.type})")
    return _run(stepper, train_data, test_data, mean, std, s, seeds, ckpt, log)


def run_job(
    job: Mapping[str, Any],
    dataset: PreparedDataset,
    *,
    log: Callable[[str], None] = print,
    checkpoint: str | Path | None = None,
    checkpoint_minutes: float = 10.0,
    stop: StopFlag | None = None,
) -> list[TrainResult]:
    """Train one job of the workflow (`job`: the rule's validated ``settings``) on a prepared dataset: one result
    per seed of ``job["seeds"]``, normalised by the training images' channel statistics."""
    (x_train, y_train), (x_test, y_test) = dataset.split("train"), dataset.split("test")
    mean, std = channel_stats(x_train)
    settings = TrainSettings.from_config(job, x_train.shape[0])
    arch, seeds = job["architecture"], job["seeds"]
    epochs = f" ({arch['epochs']} epochs of {x_train.shape[0]} images)" if "epochs" in arch else ""
    log(f"job {job['dataset']}/{job['arch']}/{job['labels']}, seeds {seeds}: {settings.steps} steps{epochs}")
    kwargs = {"num_classes": dataset.num_classes, "kernel_size": arch["kernel_size"], "width": arch.get("width"),
              "image_size": x_train.shape[-1], "init_scale": arch["init_scale"],
              "first_layer_path": arch.get("first_layer")}  # fmt: skip
    data = (torch.from_numpy(x_train), torch.from_numpy(y_train)), (torch.from_numpy(x_test), torch.from_numpy(y_test))
    resume = {"log": log, "checkpoint": checkpoint, "checkpoint_minutes": checkpoint_minutes, "stop": stop}
    try:
        if len(seeds) == 1:
            model = init_model(arch["model"], seed=seeds[0], **kwargs)
            return [train(model, arch["model"], *data, mean, std, settings, **resume)]
        return train_seeds(arch["model"], kwargs, *data, mean, std, settings, seeds, **resume)
    except TrainingDiverged as error:
        raise TrainingDiverged(f"{job['dataset']}/{job['arch']}/{job['labels']}: {error}") from None


def job_tables(job: Mapping[str, Any], results: Sequence[TrainResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A job's results as its tidy snapshots and metrics tables, with the run keys (and each run's precision and
    effective batch size in the metrics)."""
    keys = {"dataset": job["dataset"], "arch": job["arch"], "model": job["architecture"]["model"],
            "labels": job["labels"]}  # fmt: skip
    runs = list(zip(job["seeds"], results, strict=True))
    snapshots = [snapshots_frame(r.snapshots).assign(**keys, seed=seed) for seed, r in runs]
    metrics = [r.metrics.assign(**keys, seed=seed, precision=r.precision, batch_size=int(r.extra["batch_size"]))
               for seed, r in runs]  # fmt: skip
    return pd.concat(snapshots, ignore_index=True), pd.concat(metrics, ignore_index=True)


def _hashed(s: TrainSettings) -> dict[str, Any]:
    """The settings a run's result depends on (how often it reports does not change it)."""
    return {k: v for k, v in dataclasses.asdict(s).items() if k != "log_every"}


#: Signature of a stacked forward: (stacked params, images) -> (N, b, classes) logits. Images are (N, b, c, h, w),
#: one batch per seed, or (b, c, h, w) shared by every seed (the test split).
StackedForward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def _linear_stacked(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """LinearCNN of every seed, computed in input space: its logits are linear in the image, x . G + b, with
    G = conv_transpose2d(fc weight as K maps, conv weight) of shape (classes, c, h, w) per seed, so one grouped
    transposed convolution of the weights replaces the (b, K, h', w') activations. Same function and gradients,
    rounding aside (measured no further from float64 than the module's own), at a fraction of the work of
    conv -> flatten -> linear."""
    w, fc = params["conv.weight"], params["fc.weight"]  # (N, K, c, k, k), (N, classes, K * h' * w')
    n, k = w.shape[:2]
    classes, out_h, out_w = fc.shape[1], x.shape[-2] - w.shape[-2] + 1, x.shape[-1] - w.shape[-1] + 1
    maps = fc.view(n, classes, k, out_h, out_w).transpose(0, 1).reshape(classes, n * k, out_h, out_w)
    g = F.conv_transpose2d(maps, w.flatten(0, 1), groups=n)  # (classes, N * c, h, w)
    g = g.view(classes, n, -1).transpose(0, 1)  # (N, classes, c * h * w)
    if x.dim() == 4:  # shared images: one (b, D) x (D, N * classes) product, no per-seed copies of the batch
        logits = (x.flatten(1) @ g.flatten(0, 1).T).view(x.shape[0], n, classes).transpose(0, 1)
    else:
        logits = torch.bmm(x.flatten(2), g.transpose(1, 2))
    return logits + params["fc.bias"].unsqueeze(1)


def _check_bias_free_linear(model: nn.Module) -> None:
    """The input-space forward is LinearCNN's (parameters conv.weight, fc.weight, fc.bias)."""
    if model.get_submodule("conv").bias is not None:
        raise ValueError("the input-space linear forward assumes a first layer without bias")


def _linear_input_space(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """LinearCNN's forward in input space (``_linear_stacked`` for one seed) on the module's own parameters: the
    same function and gradients, rounding aside, with a tenth of the operations of conv -> flatten -> linear on a
    batch of 64 32x32 images (the weights' transposed convolution does not grow with the batch)."""
    _check_bias_free_linear(model)
    names = ("conv.weight", "fc.weight", "fc.bias")

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _linear_stacked({name: model.get_parameter(name).unsqueeze(0) for name in names}, x)[0]

    return forward


def snapshots_frame(snapshots: dict[int, torch.Tensor]) -> pd.DataFrame:
    """{step: (K, c, k, k)} -> tidy rows (step, filter, position, weight); position follows weight.flatten(1)."""
    frames = []
    for step, w in sorted(snapshots.items()):
        flat = w.flatten(1).numpy()
        k, d = flat.shape
        frames.append(
            pd.DataFrame(
                {
                    "step": step,
                    "filter": np.repeat(np.arange(k), d),
                    "position": np.tile(np.arange(d), k),
                    "weight": flat.ravel().astype(np.float32),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
