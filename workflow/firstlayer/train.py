"""Training, the airbench way: the dataset is one uint8 tensor on the device, batches are slices of seeded
permutations, no DataLoader and no host sync in the step loop; first-layer snapshots at chosen steps.

``train`` trains one network; ``train_seeds`` trains several seeds of one architecture at once, in one process,
and gives each seed the result ``train`` would have given it (to float rounding)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from firstlayer.models import FIRST_LAYER, build_model, first_layer
from firstlayer.patches import normalise

LABEL_MODES = ("true", "random")

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
    With ``settings.compile`` the training forward runs through ``torch.compile(model)`` (for GPUs).
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

    forward = torch.compile(model) if s.compile else model
    opt = _optimizer(list(model.parameters()), s)
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
            loss = F.cross_entropy(forward(prep(x_train[idx])), y_train[idx])
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


@dataclass(frozen=True)
class _StackedArch:
    """How ``train_seeds`` runs an architecture. ``logits`` gives every seed's logits at once (evaluation, and
    training in one graph); with ``seed_logits`` set, training runs one forward and backward per seed instead, on
    that seed's slices of the stacked parameters (measured as fast on CPU, with one seed's activations alive)."""

    logits: StackedForward
    seed_logits: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor] | None = None
    channels_last: bool = False


def _stacked_arch(arch: str, model: nn.Module) -> _StackedArch:
    """The stacked forward of `arch`, a model of which is `model`."""
    if arch == "linear":
        if model.get_submodule(FIRST_LAYER[arch]).bias is not None:
            raise ValueError("the input-space linear forward assumes a first layer without bias")
        return _StackedArch(_linear_stacked)
    base = copy.deepcopy(model).to("meta")  # the module's forward, parameters passed by functional_call

    def seed_logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, params, (x,))

    def logits(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        n = next(iter(params.values())).shape[0]
        return torch.stack(
            [seed_logits({k: v[i] for k, v in params.items()}, x if x.dim() == 4 else x[i]) for i in range(n)]
        )

    return _StackedArch(logits, seed_logits, channels_last=True)


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
) -> list[TrainResult]:
    """Train one network per seed at once; result i is what ``train`` gives seed ``seeds[i]`` (to float rounding).

    That is ``train(init_model(arch, seed=s, **model_kwargs), arch, ..., dataclasses.replace(settings, seed=s))``:
    the same init, batch order, random labels, eval subset, snapshot and eval steps per seed. ``model_kwargs`` are
    ``init_model``'s keywords but ``seed`` (num_classes, kernel_size, width, image_size); ``settings.seed`` is
    ignored. The parameters of all seeds are stacked, (N, *shape), under one optimiser (SGD and Adam act
    elementwise, so that is N optimisers) and the loss is the sum of the seeds' mean losses, so each seed gets its
    own gradient. ``linear`` runs all seeds in one graph, in input space (see ``_linear_stacked``); ``small_cnn``
    runs each seed's module forward and backward in turn, on its slices of the stacked parameters, then one
    optimiser step. ``seconds`` and ``extra['images_per_second']`` are those of the whole run, all seeds.
    """
    s = settings
    if arch not in STACKABLE:
        raise ValueError(f"train_seeds cannot stack {arch!r}; stackable architectures: {', '.join(STACKABLE)}")
    if s.labels not in LABEL_MODES:
        raise ValueError(f"unknown label mode {s.labels!r}; allowed: {', '.join(LABEL_MODES)}")
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("train_seeds needs at least one seed")
    n = len(seeds)
    device = resolve_device(s.device)
    cuda = device.type == "cuda"
    streams = [seed_streams(seed) for seed in seeds]
    x_train, y_true = train_data
    x_test, y_test = test_data
    ys = [random_labels(y_true, st["labels"]) if s.labels == "random" else y_true for st in streams]
    eval_idx = torch.stack(
        [torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(st["eval"])) for st in streams]
    )[:, : s.train_eval_size]
    x_train, y_train = x_train.to(device), torch.stack(ys).to(device)  # labels (N, n): one row per seed
    x_test, y_test = x_test.to(device), y_test.to(device)
    eval_idx = eval_idx.to(device)
    x_eval, y_eval = x_train[eval_idx], y_train.gather(1, eval_idx)  # (N, E, c, h, w), (N, E)

    models = [init_model(arch, seed=seed, **model_kwargs) for seed in seeds]
    names = [name for name, _ in models[0].named_parameters()]
    if next(models[0].buffers(), None) is not None:
        raise ValueError(f"train_seeds cannot stack {arch!r}: it has buffers (BatchNorm statistics?)")
    params = {
        name: nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in models]).to(device)) for name in names
    }
    stacked = _stacked_arch(arch, models[0])
    mem = torch.channels_last if cuda and stacked.channels_last else torch.contiguous_format
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)

    def prep(x: torch.Tensor) -> torch.Tensor:
        """uint8 (..., c, h, w) -> normalised float; channels_last per image when the forward wants it."""
        out = normalise(x, mean_t, std_t, torch.float32)
        return out.flatten(0, -4).contiguous(memory_format=mem).view(out.shape)

    forward = stacked.seed_logits or stacked.logits
    step_forward = torch.compile(forward) if s.compile else forward
    opt = _optimizer(list(params.values()), s)
    batches = [_Batches(x_train.shape[0], s.batch_size, st["order"], device) for st in streams]
    bs = batches[0].bs
    rows = torch.arange(n, device=device).unsqueeze(1)
    first = f"{FIRST_LAYER[arch]}.weight"
    snap_steps = set(s.snapshot_steps) | {s.steps}
    eval_steps = set(s.eval_steps) | {s.steps}
    snapshots: dict[int, torch.Tensor] = {0: params[first].detach().clone()}
    losses = torch.zeros(s.steps, n, device=device)

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        return (_stacked_correct(stacked.logits, params, x_eval, y_eval, prep, s.eval_batch_size),
                _stacked_correct(stacked.logits, params, x_test, y_test, prep, s.eval_batch_size))  # fmt: skip

    evals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {0: evaluate()}
    report_every = max(1, s.steps // 10)
    t0 = time.perf_counter()
    for step in range(1, s.steps + 1):
        idx = torch.stack([b.next() for b in batches])  # (N, bs): each seed's own batch order
        xb, yb = prep(x_train[idx]), y_train[rows, idx]
        opt.zero_grad(set_to_none=True)
        if stacked.seed_logits is None:  # all seeds in one graph: the sum of the seeds' mean losses
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                per_seed = F.cross_entropy(step_forward(params, xb).flatten(0, 1), yb.flatten(), reduction="none")
                per_seed = per_seed.view(n, bs).mean(1)
            per_seed.sum().backward()
            losses[step - 1] = per_seed.detach()
        else:  # seed by seed: each backward adds the seed's gradient to its slice of the stacked .grad
            for i in range(n):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
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
    seconds = time.perf_counter() - t0

    loss_np = losses.float().cpu().numpy()
    counts = {step: (c_train.cpu().numpy(), c_test.cpu().numpy()) for step, (c_train, c_test) in evals.items()}
    snaps = {step: w.float().cpu() for step, w in sorted(snapshots.items())}
    extra = {"images_per_second": s.steps * bs * n / max(seconds, 1e-9), "seeds": float(n)}
    results = []
    for i in range(n):
        rows_i = [(j + 1, "loss", float(v)) for j, v in enumerate(loss_np[:, i])]
        for step, (c_train, c_test) in sorted(counts.items()):
            rows_i.append((step, "train_accuracy", int(c_train[i]) / x_eval.shape[1]))
            rows_i.append((step, "test_accuracy", int(c_test[i]) / x_test.shape[0]))
        metrics = pd.DataFrame(rows_i, columns=["step", "metric", "value"])
        results.append(TrainResult({k: w[i].clone() for k, w in snaps.items()}, metrics, seconds, dict(extra)))
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
