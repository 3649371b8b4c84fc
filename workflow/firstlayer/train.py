"""Training, the airbench way: the dataset is one uint8 tensor on the device, batches are slices of seeded
permutations, no DataLoader and no host sync in the step loop; first-layer snapshots at chosen steps.

``train`` trains one network; ``train_seeds`` trains several seeds of one architecture at once, in one process,
and gives each seed the result ``train`` would have given it (to float rounding).

Both can resume: given a checkpoint path they save their whole progress there every few minutes and when asked to
stop (``StopFlag``, set by SIGTERM/SIGUSR1 under ``stop_on_signals``), then raise ``TrainingInterrupted``; a later
call with the same path, settings, data and init continues from it, and ends bitwise where an uninterrupted run
ends (on a CPU).

Precision (``TrainSettings.precision``): every layer after the first may run under bfloat16 autocast, the airbench
way, while the first layer always computes in float32 (its input, weights, output and weight gradient; on CUDA with
TF32 off). The first layer's gradient is a sum of image patches weighted by the gradient arriving from above, so
rounding the layers above only reweights the patches; rounding the patches themselves (a bfloat16 first layer)
adds white noise in patch space, which shows up in the low-variance PCA components this study measures."""

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

from firstlayer.models import FIRST_LAYER, build_model, first_layer
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

#: Architectures ``train_seeds`` can train several seeds of at once (no BatchNorm: no per-seed running statistics).
STACKABLE = ("linear", "small_cnn")


@dataclass(frozen=True)
class TrainSettings:
    """Optimiser and schedule of one run (one architecture entry of the config plus the run's keys)."""

    steps: int
    lr: float
    batch_size: int = 64
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    labels: str = "true"
    seed: int = 0
    snapshot_steps: tuple[int, ...] = ()
    eval_steps: tuple[int, ...] = ()
    train_eval_size: int = 1024
    eval_batch_size: int = 512
    device: str = "cpu"
    #: ``torch.compile`` the training forward (the eager module stays the one evaluated and snapshotted). Meant for
    #: GPUs: on a CPU the compile time (tens of seconds, a C compiler needed) rarely pays for itself.
    compile: bool = False
    #: Random crop (reflect-pad ``CROP_PAD`` px, random window) and horizontal flip of every training batch.
    augment: bool = False
    #: One of ``PRECISIONS``; the first layer is float32 whatever this says (see the module docstring). float32
    #: here, the same arithmetic on every machine; the workflow's ``training.precision`` defaults to auto.
    precision: str = "float32"


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
    arch: str,
    *,
    num_classes: int,
    kernel_size: int,
    width: int | None,
    image_size: int,
    seed: int,
    init_scale: float = 1.0,
) -> nn.Module:
    """A network whose initial weights depend on `seed` alone (torch's global RNG is forked and restored).

    The first layer's weights (and bias) are multiplied by `init_scale` right after the default init: a small
    scale approaches the small-init regime of the linear theory (PAPER.md section 4)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, num_classes=num_classes, kernel_size=kernel_size, width=width, image_size=image_size)
    if init_scale != 1.0:
        with torch.no_grad():
            for p in first_layer(model, arch).parameters():
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


def resolve_precision(name: str, device: torch.device, arch: str) -> torch.dtype | None:
    """``TrainSettings.precision`` -> the autocast dtype above the first layer (None: float32 throughout).

    The linear CNN always trains in float32: everything it computes is its first layer (``train_seeds`` folds its
    readout into the filters, in input space), so there is nothing above it to round."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; allowed: {', '.join(PRECISIONS)}")
    if arch == "linear" or name == "float32" or (name == "auto" and not native_bfloat16(device)):
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


@torch.no_grad()
def correct_count(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, prep: Callable[[torch.Tensor], torch.Tensor], batch: int
) -> torch.Tensor:
    """Number of correctly classified images, as a device tensor (no host sync)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, x.shape[0], batch):
        correct += (model(prep(x[i : i + batch])).argmax(1) == y[i : i + batch]).sum()
    model.train(was_training)
    return correct


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


def _train_metrics(
    losses: np.ndarray, evals: Mapping[int, tuple[int, int]], eval_size: int, test_size: int
) -> pd.DataFrame:
    """(steps,) losses and {step: (correct train-subset images, correct test images)} -> tidy metrics."""
    rows = [(i + 1, "loss", float(v)) for i, v in enumerate(losses)]
    for step, (c_train, c_test) in sorted(evals.items()):
        rows.append((step, "train_accuracy", c_train / eval_size))
        rows.append((step, "test_accuracy", c_test / test_size))
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def train(
    model: nn.Module,
    arch: str,
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
    """Train `model` on uint8 images (n, c, h, w) with int64 labels; snapshot its first layer.

    Snapshots at step 0 and ``snapshot_steps``, accuracies at step 0 and ``eval_steps`` (the last step has both).

    Labels are permuted by the run's seed when ``settings.labels == 'random'``; test labels stay true. With
    ``'frozen'`` the labels are true and the first layer keeps its init: ``requires_grad_(False)`` and not in the
    optimiser (no weight decay, no momentum); its snapshots all equal step 0. With ``settings.augment`` every
    training batch is cropped and flipped (``augment_batch``, the run's "augment" stream). With
    ``settings.compile`` the training forward runs through ``torch.compile(model)`` (for GPUs). Training steps run
    in ``settings.precision`` (``resolve_precision``) above a float32 first layer, in channels_last on a GPU or
    under bfloat16 autocast (the model is left in that memory format); accuracy is evaluated in float32.

    With a `checkpoint` path the whole progress (model, optimiser, batch order, augmentation generator, snapshots,
    accuracies and losses so far) is saved there every `checkpoint_minutes` (0: only when stopping) and when
    `stop` is requested, after which ``TrainingInterrupted`` is raised. A checkpoint of this run found at the
    start (same settings, data and initial model) is resumed from; the result is then bitwise that of an
    uninterrupted run on a CPU. The loop draws from no global RNG, so these generators are all there is to save.
    """
    s = settings
    _check_labels(s.labels)
    device = resolve_device(s.device)
    amp = resolve_precision(s.precision, device, arch)
    streams = seed_streams(s.seed)
    x_train, y_train = train_data
    x_test, y_test = test_data
    if s.labels == "random":
        y_train = random_labels(y_train, streams["labels"])
    parts = ("train", arch, dataclasses.asdict(s), str(amp), model.state_dict(), x_train, y_train, x_test, y_test,
             mean, std)  # fmt: skip
    ckpt = _Checkpoints(checkpoint, checkpoint_minutes, stop, lambda: run_digest(*parts), log)
    eval_idx = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(streams["eval"]))
    eval_idx = eval_idx[: s.train_eval_size]
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    x_eval, y_eval = x_train[eval_idx.to(device)], y_train[eval_idx.to(device)]

    mem = torch.channels_last if device.type == "cuda" or amp is not None else torch.contiguous_format
    model = model.to(device=device, memory_format=mem)
    model.train()
    conv = first_layer(model, arch)
    log(f"precision: {describe_precision(amp)} ({s.precision!r} on {device.type})")
    if s.labels == "frozen":
        conv.requires_grad_(False)
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return normalise(x, mean_t, std_t, torch.float32).contiguous(memory_format=mem)

    opt = _optimizer([p for p in model.parameters() if p.requires_grad], s)
    batches = _Batches(x_train.shape[0], s.batch_size, streams["order"], device)
    augment = _augment_generator(streams["augment"], device) if s.augment else None
    snap_steps = set(s.snapshot_steps) | {s.steps}
    eval_steps = set(s.eval_steps) | {s.steps}
    losses = torch.zeros(s.steps, device=device)

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:  # in float32: bfloat16 logits tie more often
        return (correct_count(model, x_eval, y_eval, prep, s.eval_batch_size),
                correct_count(model, x_test, y_test, prep, s.eval_batch_size))  # fmt: skip

    with float32_first_layer(conv):
        state = ckpt.load()
        if state is None:
            start, seconds = 0, 0.0
            snapshots: dict[int, torch.Tensor] = {0: conv.weight.detach().clone()}
            evals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {0: evaluate()}
        else:
            start, seconds = int(state["step"]), float(state["seconds"])
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            batches.load_state(state["order"])
            if augment is not None:
                augment.set_state(state["augment"])
            snapshots = {k: v.to(device) for k, v in state["snapshots"].items()}
            evals = {k: (a.to(device), b.to(device)) for k, (a, b) in state["evals"].items()}
            losses.copy_(state["losses"])

        def progress() -> dict[str, Any]:
            return {"model": model.state_dict(), "optimizer": opt.state_dict(), "order": batches.state(),
                    "augment": augment.get_state() if augment is not None else None, "snapshots": snapshots,
                    "evals": evals, "losses": losses, "seconds": seconds + time.perf_counter() - t0}  # fmt: skip

        forward = _linear_input_space(model) if arch == "linear" else model
        forward = torch.compile(forward) if s.compile else forward
        report_every = max(1, s.steps // 10)
        t0 = time.perf_counter()
        for step in range(start + 1, s.steps + 1):
            ckpt.boundary(step - 1, progress)
            idx = batches.next()
            xb = x_train[idx]
            if augment is not None:
                xb = augment_batch(xb, augment)
            with _autocast(device, amp):
                loss = F.cross_entropy(forward(prep(xb)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses[step - 1] = loss.detach()
            if step in snap_steps:
                snapshots[step] = conv.weight.detach().clone()
            if step in eval_steps:
                evals[step] = evaluate()
            if step % report_every == 0 or step == s.steps:
                log(f"step {step}/{s.steps}  {time.perf_counter() - t0:.1f}s")
        elapsed = time.perf_counter() - t0

    counts = {step: (int(c_train.item()), int(c_test.item())) for step, (c_train, c_test) in evals.items()}
    metrics = _train_metrics(losses.float().cpu().numpy(), counts, x_eval.shape[0], x_test.shape[0])
    snaps = {k: v.float().cpu().contiguous() for k, v in sorted(snapshots.items())}
    rate = (s.steps - start) * batches.bs / max(elapsed, 1e-9)
    return TrainResult(snaps, metrics, seconds + elapsed, {"images_per_second": rate}, precision_name(amp))


# ------------------------------------------------------------------------ several seeds at once

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
    if model.get_submodule(FIRST_LAYER["linear"]).bias is not None:
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


@dataclass(frozen=True)
class _StackedArch:
    """How ``train_seeds`` runs an architecture. ``logits`` gives every seed's logits at once (evaluation, and
    training in one graph); with ``seed_logits`` set, training runs one forward and backward per seed instead, on
    that seed's slices of the stacked parameters (measured as fast on CPU, with one seed's activations alive)."""

    logits: StackedForward
    seed_logits: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor] | None = None
    channels_last: bool = False
    #: The first-layer module the forwards call (for ``float32_first_layer``); None when they call no module.
    first_layer: nn.Module | None = None


def _stacked_arch(arch: str, model: nn.Module) -> _StackedArch:
    """The stacked forward of `arch`, a model of which is `model`."""
    if arch == "linear":
        _check_bias_free_linear(model)
        return _StackedArch(_linear_stacked)
    base = copy.deepcopy(model).to("meta")  # the module's forward, parameters passed by functional_call

    def seed_logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, params, (x,))

    def logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        n = next(iter(params.values())).shape[0]
        return torch.stack(
            [seed_logits({k: v[i] for k, v in params.items()}, x if x.dim() == 4 else x[i]) for i in range(n)]
        )

    return _StackedArch(logits, seed_logits, channels_last=True, first_layer=first_layer(base, arch))


@torch.no_grad()
def _stacked_correct(
    forward: StackedForward,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    prep: Callable[[torch.Tensor], torch.Tensor],
    batch: int,
) -> torch.Tensor:
    """(N,) correctly classified images per seed, as a device tensor; x and y per seed (N, n, ...) or shared."""
    n = next(iter(params.values())).shape[0]
    shared = y.dim() == 1
    correct = torch.zeros(n, dtype=torch.long, device=x.device)
    for i in range(0, x.shape[0 if shared else 1], batch):
        xb, yb = (x[i : i + batch], y[i : i + batch]) if shared else (x[:, i : i + batch], y[:, i : i + batch])
        correct += (forward(params, prep(xb)).argmax(-1) == yb).sum(-1)
    return correct


def train_seeds(
    arch: str,
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
    """Train one network per seed at once; result i is what ``train`` gives seed ``seeds[i]`` (to float rounding).

    That is ``train(init_model(arch, seed=s, **model_kwargs), arch, ..., dataclasses.replace(settings, seed=s))``:
    the same init, batch order, random labels, eval subset, augmentation, snapshot and eval steps per seed.
    ``model_kwargs`` are ``init_model``'s keywords but ``seed`` (num_classes, kernel_size, width, image_size,
    init_scale); ``settings.seed`` is ignored. The parameters of all seeds are stacked, (N, *shape), under one
    optimiser (SGD and Adam act elementwise, so that is N optimisers) and the loss is the sum of the seeds' mean
    losses, so each seed gets its own gradient; with labels ``'frozen'`` the stacked first layer is left out of it.
    ``linear`` runs all seeds in one graph, in input space (see ``_linear_stacked``); ``small_cnn`` runs each
    seed's module forward and backward in turn, on its slices of the stacked parameters, then one optimiser step.
    ``seconds`` and ``extra['images_per_second']`` are those of the whole run, all seeds. `checkpoint`,
    `checkpoint_minutes` and `stop` work as in ``train`` (one checkpoint holds every seed).
    """
    s = settings
    if arch not in STACKABLE:
        raise ValueError(f"train_seeds cannot stack {arch!r}; stackable architectures: {', '.join(STACKABLE)}")
    _check_labels(s.labels)
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("train_seeds needs at least one seed")
    n = len(seeds)
    device = resolve_device(s.device)
    amp = resolve_precision(s.precision, device, arch)
    streams = [seed_streams(seed) for seed in seeds]
    x_train, y_true = train_data
    x_test, y_test = test_data
    ys = [random_labels(y_true, st["labels"]) if s.labels == "random" else y_true for st in streams]
    eval_idx = torch.stack(
        [torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(st["eval"])) for st in streams]
    )[:, : s.train_eval_size]

    models = [init_model(arch, seed=seed, **model_kwargs) for seed in seeds]
    if next(models[0].buffers(), None) is not None:
        raise ValueError(f"train_seeds cannot stack {arch!r}: it has buffers (BatchNorm statistics?)")
    frozen = {id(p) for p in first_layer(models[0], arch).parameters()} if s.labels == "frozen" else set()
    params = {
        name: nn.Parameter(
            torch.stack([m.get_parameter(name).detach() for m in models]).to(device), requires_grad=id(p) not in frozen
        )
        for name, p in models[0].named_parameters()
    }
    common = dataclasses.asdict(dataclasses.replace(s, seed=0))  # settings.seed is ignored
    parts = ("train_seeds", arch, dict(model_kwargs), seeds, common, str(amp), params, x_train, ys, x_test, y_test,
             mean, std)  # fmt: skip
    ckpt = _Checkpoints(checkpoint, checkpoint_minutes, stop, lambda: run_digest(*parts), log)
    x_train, y_train = x_train.to(device), torch.stack(ys).to(device)  # labels (N, n): one row per seed
    x_test, y_test = x_test.to(device), y_test.to(device)
    eval_idx = eval_idx.to(device)
    x_eval, y_eval = x_train[eval_idx], y_train.gather(1, eval_idx)  # (N, E, c, h, w), (N, E)

    stacked = _stacked_arch(arch, models[0])
    on_gpu_or_amp = device.type == "cuda" or amp is not None
    mem = torch.channels_last if on_gpu_or_amp and stacked.channels_last else torch.contiguous_format
    log(f"precision: {describe_precision(amp)} ({s.precision!r} on {device.type})")
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)

    def prep(x: torch.Tensor) -> torch.Tensor:
        """uint8 (..., c, h, w) -> normalised float; channels_last per image when the forward wants it."""
        out = normalise(x, mean_t, std_t, torch.float32)
        return out.flatten(0, -4).contiguous(memory_format=mem).view(out.shape)

    forward = stacked.seed_logits or stacked.logits
    step_forward = torch.compile(forward) if s.compile else forward
    opt = _optimizer([p for p in params.values() if p.requires_grad], s)
    batches = [_Batches(x_train.shape[0], s.batch_size, st["order"], device) for st in streams]
    augment = [_augment_generator(st["augment"], device) for st in streams] if s.augment else []
    bs = batches[0].bs
    rows = torch.arange(n, device=device).unsqueeze(1)
    first = f"{FIRST_LAYER[arch]}.weight"
    snap_steps = set(s.snapshot_steps) | {s.steps}
    eval_steps = set(s.eval_steps) | {s.steps}
    losses = torch.zeros(s.steps, n, device=device)

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:  # in float32, as in ``train``
        return (_stacked_correct(stacked.logits, params, x_eval, y_eval, prep, s.eval_batch_size),
                _stacked_correct(stacked.logits, params, x_test, y_test, prep, s.eval_batch_size))  # fmt: skip

    with float32_first_layer(stacked.first_layer):
        state = ckpt.load()
        if state is None:
            start, seconds = 0, 0.0
            snapshots: dict[int, torch.Tensor] = {0: params[first].detach().clone()}
            evals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {0: evaluate()}
        else:
            start, seconds = int(state["step"]), float(state["seconds"])
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(state["params"][name])
            opt.load_state_dict(state["optimizer"])
            for b, saved in zip(batches, state["order"], strict=True):
                b.load_state(saved)
            for g, saved in zip(augment, state["augment"], strict=True):
                g.set_state(saved)
            snapshots = {k: v.to(device) for k, v in state["snapshots"].items()}
            evals = {k: (a.to(device), b.to(device)) for k, (a, b) in state["evals"].items()}
            losses.copy_(state["losses"])

        def progress() -> dict[str, Any]:
            return {"params": {k: v.detach() for k, v in params.items()}, "optimizer": opt.state_dict(),
                    "order": [b.state() for b in batches], "augment": [g.get_state() for g in augment],
                    "snapshots": snapshots, "evals": evals, "losses": losses,
                    "seconds": seconds + time.perf_counter() - t0}  # fmt: skip

        report_every = max(1, s.steps // 10)
        t0 = time.perf_counter()
        for step in range(start + 1, s.steps + 1):
            ckpt.boundary(step - 1, progress)
            idx = torch.stack([b.next() for b in batches])  # (N, bs): each seed's own batch order
            images = x_train[idx]
            if augment:  # each seed's batch with its own generator: the draws ``train`` makes for that seed
                images = torch.stack([augment_batch(images[i], g) for i, g in enumerate(augment)])
            xb, yb = prep(images), y_train[rows, idx]
            opt.zero_grad(set_to_none=True)
            if stacked.seed_logits is None:  # all seeds in one graph: the sum of the seeds' mean losses
                with _autocast(device, amp):
                    per_seed = F.cross_entropy(step_forward(params, xb).flatten(0, 1), yb.flatten(), reduction="none")
                    per_seed = per_seed.view(n, bs).mean(1)
                per_seed.sum().backward()
                losses[step - 1] = per_seed.detach()
            else:  # seed by seed: each backward adds the seed's gradient to its slice of the stacked .grad
                for i in range(n):
                    with _autocast(device, amp):
                        loss = F.cross_entropy(step_forward({k: v[i] for k, v in params.items()}, xb[i]), yb[i])
                    loss.backward()
                    losses[step - 1, i] = loss.detach()
            opt.step()
            if step in snap_steps:
                snapshots[step] = params[first].detach().clone()
            if step in eval_steps:
                evals[step] = evaluate()
            if step % report_every == 0 or step == s.steps:
                log(f"step {step}/{s.steps} ({n} seeds)  {time.perf_counter() - t0:.1f}s")
        elapsed = time.perf_counter() - t0

    loss_np = losses.float().cpu().numpy()
    counts = {step: (c_train.cpu().numpy(), c_test.cpu().numpy()) for step, (c_train, c_test) in evals.items()}
    snaps = {step: w.float().cpu() for step, w in sorted(snapshots.items())}
    extra = {"images_per_second": (s.steps - start) * bs * n / max(elapsed, 1e-9), "seeds": float(n)}
    results = []
    for i in range(n):
        counts_i = {step: (int(c_train[i]), int(c_test[i])) for step, (c_train, c_test) in counts.items()}
        metrics = _train_metrics(loss_np[:, i], counts_i, x_eval.shape[1], x_test.shape[0])
        snaps_i = {k: w[i].clone() for k, w in snaps.items()}
        results.append(TrainResult(snaps_i, metrics, seconds + elapsed, dict(extra), precision_name(amp)))
    return results


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
