"""Training, the airbench way: the dataset is one uint8 tensor on the device, batches are slices of seeded
permutations, no DataLoader and no host sync in the step loop; first-layer snapshots at chosen steps.

One loop (``_loop``) trains N seeds of one network: one (``train``), or the linear CNN's seeds stacked in input
space (``train_seeds``, where stacking pays); other networks' seeds train one after another. The first layer always
computes in float32 (``firstlayer.precision``); checkpoints and stopping are ``firstlayer.resume``'s."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from firstlayer.augment import augment_batch
from firstlayer.inputspace import PARAMETERS, check_linear_cnn, input_space_forward, linear_logits
from firstlayer.models import first_layer
from firstlayer.modelspec import build_model, model_spec
from firstlayer.patches import normalise
from firstlayer.precision import (
    autocast,
    describe_precision,
    float32_first_layer,
    precision_name,
    resolve_device,
    resolve_precision,
)
from firstlayer.resume import Checkpoints, StopFlag, run_digest, seed_checkpoint
from firstlayer.settings import TrainSettings, result_fields, seed_streams


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: nothing trained from here on is a result."""


@dataclass
class TrainResult:
    """First-layer weights (K, c, k, k) per snapshot step (step 0 = init), and tidy metrics (step, metric, value)."""

    snapshots: dict[int, torch.Tensor]
    metrics: pd.DataFrame
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)
    #: The precision the run computed in above its first layer ("float32" or "bfloat16"), as resolved.
    precision: str = "float32"


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


def _optimizer(params: Sequence[torch.Tensor], s: TrainSettings) -> torch.optim.Optimizer:
    """SGD or Adam over `params`; both act elementwise, so one optimiser over stacked seeds is N optimisers."""
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    raise ValueError(f"unknown optimizer {s.optimizer!r}; allowed: sgd, adam")


# ------------------------------------------------------------------------ the two networks the loop trains


class _Module:
    """One network trained through its own module (the linear CNN through its input-space forward), evaluated in
    eval mode; images in channels_last where the forward wants it (same values, another layout)."""

    def __init__(self, model: nn.Module, model_name: str, s: TrainSettings, device: torch.device, amp: Any) -> None:
        linear = model_spec(model_name).linear
        channels_last = (device.type == "cuda" or amp is not None) and not linear
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=self.layout).train()
        self.first_layer = first_layer(self.model, model_name, s.first_layer)
        if s.labels == "frozen":  # not in the optimiser either: no weight decay, no momentum
            self.first_layer.requires_grad_(False)
        self.n, self.trainable = 1, [p for p in self.model.parameters() if p.requires_grad]
        forward = input_space_forward(self.model) if linear else self.model
        self.forward = torch.compile(forward) if s.compile else forward

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (1, b, c, h, w), labels (1, b) -> logits (1, b, classes), the batch's mean loss (1,)."""
        logits = self.forward(x[0].contiguous(memory_format=self.layout))
        return logits.unsqueeze(0), F.cross_entropy(logits, y[0]).unsqueeze(0)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(1, b, classes) eval-mode logits of images (b, c, h, w) or (1, b, c, h, w)."""
        self.model.eval()
        try:
            return self.model((x if x.dim() == 4 else x[0]).contiguous(memory_format=self.layout)).unsqueeze(0)
        finally:
            self.model.train()

    def first_weight(self) -> torch.Tensor:
        """(1, K, c, k, k) first-layer weights, a copy."""
        return self.first_layer.weight.detach().clone().unsqueeze(0)

    def state(self) -> dict[str, Any]:
        """The parameters and buffers, for a checkpoint."""
        return {"model": self.model.state_dict()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Back to a checkpoint's parameters and buffers."""
        self.model.load_state_dict(state["model"])


class _StackedLinear:
    """N seeds of the linear CNN, each parameter stacked (N, *shape), computed in one graph in input space: the
    loss is the sum of the seeds' mean losses, so each seed gets its own gradient. It has no module: nothing to
    switch to eval mode, and no first-layer module for ``float32_first_layer`` (it is float32 throughout)."""

    first_layer = None

    def __init__(self, models: Sequence[nn.Module], s: TrainSettings, device: torch.device) -> None:
        for model in models:
            check_linear_cnn(model)
        frozen = {"conv.weight"} if s.labels == "frozen" else set()
        self.params = {name: nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in models]).to(device),
                                          requires_grad=name not in frozen)
                       for name in PARAMETERS}  # fmt: skip
        self.n, self.trainable = len(models), [p for p in self.params.values() if p.requires_grad]
        self.forward = torch.compile(linear_logits) if s.compile else linear_logits

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, b, c, h, w), labels (N, b) -> logits (N, b, classes), each seed's mean loss (N,)."""
        logits = self.forward(self.params, x)
        return logits, F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, b, classes) logits of images (b, c, h, w) shared by every seed, or (N, b, c, h, w)."""
        return linear_logits(self.params, x)

    def first_weight(self) -> torch.Tensor:
        """(N, K, c, k, k) first-layer weights, a copy."""
        return self.params["conv.weight"].detach().clone()

    def state(self) -> dict[str, Any]:
        """The stacked parameters, for a checkpoint."""
        return {"params": {k: v.detach() for k, v in self.params.items()}}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Back to a checkpoint's stacked parameters."""
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(state["params"][name])


_Net = _Module | _StackedLinear


# ------------------------------------------------------------------------ the training loop


def _seed_data(
    streams: Sequence[dict[str, int]], s: TrainSettings, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each seed's training labels (N, n) (true, or its own permutation) and its seeded train-eval subset: images
    (N, E, c, h, w) and labels (N, E), on the device of the images `x`."""
    labels = torch.stack([random_labels(y, st["labels"]) if s.labels == "random" else y for st in streams])
    subsets = torch.stack(
        [torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(st["eval"])) for st in streams]
    )[:, : s.train_eval_size].to(x.device)
    labels = labels.to(x.device)
    return labels, x[subsets], labels.gather(1, subsets)


def _loop(
    net: _Net,
    amp: torch.dtype | None,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor],
    mean: np.ndarray,
    std: np.ndarray,
    s: TrainSettings,
    seeds: Sequence[int],
    ckpt: Checkpoints,
    log: Callable[[str], None],
) -> list[TrainResult]:
    """The one training loop: N seeds, each with its own labels, batch order, augmentation and eval subset;
    snapshots and accuracies on schedule; checkpoints; progress lines and the divergence check."""
    device, n, streams = resolve_device(s.device), len(seeds), [seed_streams(seed) for seed in seeds]
    x_train, x_test, y_test = train_data[0].to(device), test_data[0].to(device), test_data[1].to(device)
    y_train, x_eval, y_eval = _seed_data(streams, s, x_train, train_data[1])
    mean_t, std_t = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    n_train, bs = x_train.shape[0], min(s.batch_size, x_train.shape[0])
    if bs < s.batch_size:
        log(f"warning: batch_size {s.batch_size} is larger than the {n_train} training images: every step is a "
            f"full batch of {bs} (the effective batch size, in the metrics table)")  # fmt: skip
    order = [torch.Generator().manual_seed(st["order"]) for st in streams]  # batches: a permutation per epoch
    augment = [torch.Generator(device=device).manual_seed(st["augment"]) for st in streams] if s.augment else []
    opt, rows = _optimizer(net.trainable, s), torch.arange(n, device=device).unsqueeze(1)
    eval_sets = ((x_eval, y_eval), (x_test, y_test))

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) right answers on each seed's train-eval subset, and on the test split."""
        return tuple(_count_correct(net, x, y, mean_t, std_t, s.eval_batch_size) for x, y in eval_sets)

    with float32_first_layer(net.first_layer):
        perm, pos = torch.empty(n, 0, dtype=torch.long, device=device), n_train
        snapshots, evals, losses, seconds, start = {0: net.first_weight()}, {}, torch.zeros(s.steps, n), 0.0, 0
        if (state := ckpt.load()) is not None:  # everything the loop draws from is in the checkpoint
            _restore(state, net, opt, order + augment)
            perm, pos, seconds, start = state["perm"].to(device), state["pos"], state["seconds"], state["step"]
            snapshots, losses = state["snapshots"], state["losses"]
            evals = {step: (a.to(device), b.to(device)) for step, (a, b) in state["evals"].items()}
        snapshots, losses = {k: w.to(device) for k, w in snapshots.items()}, losses.to(device)
        evals = evals or {0: evaluate()}
        reporter, t0 = _Reporter(s, seeds, bs, log, start, device), time.perf_counter()

        def saved() -> dict[str, Any]:  # built only when a checkpoint is written
            return {**net.state(), "optimizer": opt.state_dict(), "order": [g.get_state() for g in order],
                    "augment": [g.get_state() for g in augment], "perm": perm, "pos": pos, "snapshots": snapshots,
                    "evals": evals, "losses": losses, "seconds": seconds + time.perf_counter() - t0}  # fmt: skip

        for step in range(start + 1, s.steps + 1):
            ckpt.boundary(step - 1, saved)
            if pos + bs > n_train:  # a new epoch: each seed's next permutation (the last partial batch is dropped)
                perm, pos = torch.stack([torch.randperm(n_train, generator=g) for g in order]).to(device), 0
            idx, pos = perm[:, pos : pos + bs], pos + bs  # (N, bs): each seed's own batch
            images = x_train[idx]
            if augment:  # each seed's batch with its own generator
                images = torch.stack([augment_batch(images[i], g) for i, g in enumerate(augment)])
            x, y = normalise(images, mean_t, std_t, torch.float32), y_train[rows, idx]
            with autocast(device, amp):
                logits, loss = net.losses(x, y)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # the seeds' losses share no parameter: each gets its own gradient
            opt.step()
            losses[step - 1] = loss.detach()
            reporter.correct += (logits.detach().argmax(-1) == y).sum(-1)
            if step in s.snapshot_steps or step == s.steps:
                snapshots[step] = net.first_weight()
            if step in s.eval_steps or step == s.steps:
                evals[step] = evaluate()
            if step % reporter.every == 0 or step == s.steps:
                reporter.report(step, losses)
        elapsed = time.perf_counter() - t0
    _check_finite(snapshots, losses, reporter)
    rate = (s.steps - start) * bs * n / max(elapsed, 1e-9)
    return _results(snapshots, evals, losses, x_eval.shape[1], x_test.shape[0], seconds + elapsed, rate, bs, amp)


def _restore(
    state: Mapping[str, Any], net: _Net, opt: torch.optim.Optimizer, generators: list[torch.Generator]
) -> None:
    """Parameters, optimiser and generators (batch order, then augmentation) as a checkpoint saved them."""
    net.load_state(state)
    opt.load_state_dict(state["optimizer"])
    for g, saved in zip(generators, state["order"] + state["augment"], strict=True):
        g.set_state(saved)


def _count_correct(
    net: _Net, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch: int
) -> torch.Tensor:
    """(N,) correctly classified images of uint8 `x`, per seed (N, n, ...) or shared (n, ...), in float32 (bfloat16
    logits tie more often), `batch` images at a time."""
    shared = y.dim() == 1
    counts = torch.zeros(net.n, dtype=torch.long, device=x.device)
    for i in range(0, x.shape[0 if shared else 1], batch):
        part = (slice(i, i + batch),) if shared else (slice(None), slice(i, i + batch))
        counts += (net.logits(normalise(x[part], mean, std, torch.float32)).argmax(-1) == y[part]).sum(-1)
    return counts


def _duration(seconds: float) -> str:
    """h:mm:ss."""
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

    def report(self, step: int, losses: torch.Tensor) -> None:
        """One progress line for the steps since the last; stops a diverged run."""
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
        """Raise ``TrainingDiverged`` naming the first non-finite loss after step `first`, and what to try."""
        bad = (~torch.isfinite(losses[first:])).nonzero()[0].tolist()
        step, seed = first + bad[0] + 1, self.seeds[bad[1]]
        value = float(losses[step - 1, bad[1]])
        raise TrainingDiverged(
            f"training diverged: the loss of seed {seed} became {value} at step {step} of {self.s.steps} "
            f"({self.s.optimizer}, lr {self.s.lr:g}); lower the learning rate (e.g. lr: {self.s.lr / 10:g}) or the "
            "init_scale, and rerun. No table is written from a diverged run."
        )


def _check_finite(snapshots: dict[int, torch.Tensor], losses: torch.Tensor, reporter: _Reporter) -> None:
    """The end-of-run check: every loss and every snapshot finite (a resumed run's earlier steps included)."""
    if not bool(torch.isfinite(losses).all()):
        reporter.diverged(losses, 0)
    bad = [step for step, w in snapshots.items() if not bool(torch.isfinite(w).all())]
    if bad:
        raise TrainingDiverged(f"training diverged: the first-layer weights are not finite at steps {bad}")


def _results(
    snapshots: dict[int, torch.Tensor],
    evals: dict[int, tuple[torch.Tensor, torch.Tensor]],
    losses: torch.Tensor,
    eval_size: int,
    test_size: int,
    seconds: float,
    rate: float,
    batch: int,
    amp: torch.dtype | None,
) -> list[TrainResult]:
    """One TrainResult per seed: its snapshots, and its metrics as tidy rows (step, metric, value)."""
    losses_np = losses.float().cpu().numpy()
    counts = {step: (a.cpu().numpy(), b.cpu().numpy()) for step, (a, b) in sorted(evals.items())}
    snaps = {step: w.float().cpu() for step, w in sorted(snapshots.items())}
    extra = {"images_per_second": rate, "seeds": float(losses.shape[1]), "batch_size": float(batch)}
    results = []
    for i in range(losses.shape[1]):
        rows = [(step + 1, "loss", float(v)) for step, v in enumerate(losses_np[:, i])]
        for step, (right_train, right_test) in counts.items():
            rows += [(step, "train_accuracy", int(right_train[i]) / eval_size),
                     (step, "test_accuracy", int(right_test[i]) / test_size)]  # fmt: skip
        metrics = pd.DataFrame(rows, columns=["step", "metric", "value"])
        snaps_i = {k: w[i].clone().contiguous() for k, w in snaps.items()}
        results.append(TrainResult(snaps_i, metrics, seconds, dict(extra), precision_name(amp)))
    return results


# ------------------------------------------------------------------------ the entry points


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
    device = resolve_device(s.device)
    amp = resolve_precision(s.precision, device, model_name)
    x_train, y_train = train_data
    parts = ("train", model_name, result_fields(s), str(amp), model.state_dict(), x_train, y_train, *test_data, mean,
             std)  # fmt: skip
    ckpt = Checkpoints(checkpoint, checkpoint_minutes, stop, lambda: run_digest(*parts), log)
    net = _Module(model, model_name, s, device, amp)
    log(f"precision: {describe_precision(amp)} ({s.precision!r} on {device.type})")
    return _loop(net, amp, train_data, test_data, mean, std, s, [s.seed], ckpt, log)[0]


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
    """Train one network per seed in this process; result i is what ``train`` gives seed ``seeds[i]``:
    ``train(init_model(model_name, seed=s, **model_kwargs), model_name, ..., replace(settings, seed=s))``.

    The linear CNN's seeds are stacked and trained at once in input space (to float rounding; one checkpoint holds
    every seed); other networks' seeds train one after another (bitwise; each its own checkpoint, beside
    `checkpoint`), since stacking them does not pay on a CPU (benchmarks/README.md). ``model_kwargs`` are
    ``init_model``'s keywords but ``seed``; ``settings.seed`` is ignored. ``seconds`` and
    ``extra['images_per_second']`` are those of the whole call."""
    s, seeds = settings, [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("train_seeds needs at least one seed")
    resume = {"log": log, "checkpoint_minutes": checkpoint_minutes, "stop": stop}
    if not model_spec(model_name).linear:  # one after another
        t0, results = time.perf_counter(), []
        for i, seed in enumerate(seeds):
            log(f"seed {seed} ({i + 1} of {len(seeds)}, one after another)")
            model = init_model(model_name, seed=seed, **model_kwargs)
            results.append(train(model, model_name, train_data, test_data, mean, std,
                                 dataclasses.replace(s, seed=seed), checkpoint=seed_checkpoint(checkpoint, seed),
                                 **resume))  # fmt: skip
        seconds = time.perf_counter() - t0
        rate = sum(s.steps * r.extra["batch_size"] for r in results) / max(seconds, 1e-9)
        extra = {"images_per_second": rate, "seeds": float(len(seeds))}
        return [dataclasses.replace(r, seconds=seconds, extra={**r.extra, **extra}) for r in results]
    device = resolve_device(s.device)
    amp = resolve_precision(s.precision, device, model_name)
    net = _StackedLinear([init_model(model_name, seed=seed, **model_kwargs) for seed in seeds], s, device)
    parts = ("train_seeds", model_name, dict(model_kwargs), seeds, result_fields(dataclasses.replace(s, seed=0)),
             str(amp), net.params, *train_data, *test_data, mean, std)  # fmt: skip
    ckpt = Checkpoints(checkpoint, checkpoint_minutes, stop, lambda: run_digest(*parts), log)
    log(f"precision: {describe_precision(amp)} ({s.precision!r} on {device.type})")
    return _loop(net, amp, train_data, test_data, mean, std, s, seeds, ckpt, log)
