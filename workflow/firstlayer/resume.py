"""Stopping and resuming a training run: a stop flag set by signals, checkpoints written atomically between steps,
and the digest that ties a checkpoint to the run it came from (settings, data, init)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Exit status of a training job stopped by a signal after saving its checkpoint (EX_TEMPFAIL: retry later).
INTERRUPTED_EXIT_CODE = 75


class StopFlag:
    """Asks a training loop to save its checkpoint and stop at the next step boundary. Signal handlers only set
    it; the loop reads a plain attribute (no host sync)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None

    def request(self, signum: int | None = None) -> None:
        self.requested, self.signal = True, signum


@contextlib.contextmanager
def stop_on_signals(signums: Sequence[int] = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)) -> Iterator[StopFlag]:
    """A StopFlag set by any of `signums` (SLURM sends SIGTERM before a time limit or preemption, or SIGUSR1 with
    ``--signal``; Ctrl-C in Snakemake's terminal sends SIGINT to its jobs too) while the block runs; the previous
    handlers are restored after it. Main thread only."""
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


class Checkpoints:
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


def seed_checkpoint(path: str | Path | None, seed: int) -> Path | None:
    """The checkpoint of one seed of a job whose seeds train one after another: beside the job's own `path`."""
    return None if path is None else Path(path).with_suffix(f".seed{seed}{Path(path).suffix}")


def checkpoint_files(path: str | Path, seeds: Sequence[int]) -> list[Path]:
    """Every checkpoint a job of `seeds` may leave at `path` (the job's, and one per seed trained in turn)."""
    return [Path(path), *(seed_checkpoint(path, seed) for seed in seeds)] if len(seeds) > 1 else [Path(path)]
