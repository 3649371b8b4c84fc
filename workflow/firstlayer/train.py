"""Training, the airbench way: the dataset is one uint8 tensor on the device, batches are slices of seeded
permutations, no DataLoader and no host sync in the step loop; first-layer snapshots at chosen steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from firstlayer.models import build_model, first_layer
from firstlayer.patches import normalise

LABEL_MODES = ("true", "random")


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


@dataclass
class TrainResult:
    """First-layer weights (K, c, k, k) per snapshot step (step 0 = init), and tidy metrics (step, metric, value)."""

    snapshots: dict[int, torch.Tensor]
    metrics: pd.DataFrame
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def log_schedule(steps: int, count: int) -> tuple[int, ...]:
    """Step 0, `count` log-spaced steps in [1, steps], and `steps` itself, sorted and unique."""
    logspaced = np.geomspace(1, steps, num=count) if count > 0 else np.zeros(0)
    return tuple(sorted({0, steps, *np.unique(np.round(logspaced).astype(int)).tolist()}))


def seed_streams(seed: int) -> dict[str, int]:
    """Independent integer seeds for the init, the batch order, the random labels and the eval subset."""
    names = ("init", "order", "labels", "eval")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1, dtype=np.uint64)[0] % (2**63)) for n, c in zip(names, children, strict=True)}


def random_labels(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """(n,) labels -> a seeded permutation of them: same class counts, no relation to the images."""
    g = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(labels.shape[0], generator=g)]


def init_model(
    arch: str, *, num_classes: int, kernel_size: int, width: int | None, image_size: int, seed: int
) -> nn.Module:
    """A network whose initial weights depend on `seed` alone (torch's global RNG is forked and restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, num_classes=num_classes, kernel_size=kernel_size, width=width, image_size=image_size)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error a user can fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def _optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    raise ValueError(f"unknown optimizer {s.optimizer!r}; allowed: sgd, adam")


class _Batches:
    """Index batches from seeded per-epoch permutations (the last partial batch of an epoch is dropped)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.n, self.bs, self.device = n, min(batch_size, n), device
        self.g = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.empty(0, dtype=torch.long), n

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
) -> TrainResult:
    """Train `model` on uint8 images (n, c, h, w) with int64 labels; snapshot its first layer.

    Snapshots at step 0 and ``snapshot_steps``, accuracies at step 0 and ``eval_steps`` (the last step has both).

    Labels are permuted by the run's seed when ``settings.labels == 'random'``; test labels stay true.
    """
    s = settings
    if s.labels not in LABEL_MODES:
        raise ValueError(f"unknown label mode {s.labels!r}; allowed: {', '.join(LABEL_MODES)}")
    device = resolve_device(s.device)
    cuda = device.type == "cuda"
    streams = seed_streams(s.seed)
    x_train, y_train = train_data
    x_test, y_test = test_data
    if s.labels == "random":
        y_train = random_labels(y_train, streams["labels"])
    eval_idx = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(streams["eval"]))
    eval_idx = eval_idx[: s.train_eval_size]
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    x_eval, y_eval = x_train[eval_idx.to(device)], y_train[eval_idx.to(device)]

    mem = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(device=device, memory_format=mem)
    model.train()
    conv = first_layer(model, arch)
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return normalise(x, mean_t, std_t, torch.float32).contiguous(memory_format=mem)

    opt = _optimizer(model, s)
    batches = _Batches(x_train.shape[0], s.batch_size, streams["order"], device)
    snap_steps = set(s.snapshot_steps) | {s.steps}
    eval_steps = set(s.eval_steps) | {s.steps}
    snapshots: dict[int, torch.Tensor] = {0: conv.weight.detach().clone()}
    losses = torch.zeros(s.steps, device=device)
    evals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {
        0: (correct_count(model, x_eval, y_eval, prep, s.eval_batch_size),
            correct_count(model, x_test, y_test, prep, s.eval_batch_size))
    }  # fmt: skip
    report_every = max(1, s.steps // 10)
    t0 = time.perf_counter()
    for step in range(1, s.steps + 1):
        idx = batches.next()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(prep(x_train[idx])), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step - 1] = loss.detach()
        if step in snap_steps:
            snapshots[step] = conv.weight.detach().clone()
        if step in eval_steps:
            evals[step] = (
                correct_count(model, x_eval, y_eval, prep, s.eval_batch_size),
                correct_count(model, x_test, y_test, prep, s.eval_batch_size),
            )
        if step % report_every == 0 or step == s.steps:
            log(f"step {step}/{s.steps}  {time.perf_counter() - t0:.1f}s")
    seconds = time.perf_counter() - t0

    loss_np = losses.float().cpu().numpy()
    rows = [(i + 1, "loss", float(v)) for i, v in enumerate(loss_np)]
    for step, (c_train, c_test) in sorted(evals.items()):
        rows.append((step, "train_accuracy", c_train.item() / x_eval.shape[0]))
        rows.append((step, "test_accuracy", c_test.item() / x_test.shape[0]))
    metrics = pd.DataFrame(rows, columns=["step", "metric", "value"])
    snaps = {k: v.float().cpu().contiguous() for k, v in sorted(snapshots.items())}
    return TrainResult(snaps, metrics, seconds, {"images_per_second": s.steps * batches.bs / max(seconds, 1e-9)})


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
