"""Resumable training: a run stopped at a step boundary and resumed from its checkpoint ends bitwise where an
uninterrupted run ends (on a CPU), in process and as a real process stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from firstlayer.models import MODELS
from firstlayer.resume import (
    INTERRUPTED_EXIT_CODE,
    StopFlag,
    TrainingInterrupted,
    checkpoint_files,
    seed_checkpoint,
    stop_on_signals,
)
from firstlayer.settings import TrainSettings, log_schedule
from firstlayer.train import init_model, train, train_seeds

MEAN = np.array([0.5, 0.5, 0.5]) * 255
STD = np.array([0.25, 0.25, 0.25]) * 255
SIZE, N, STEPS = 8, 64, 20
MODEL_KW = dict(num_classes=2, kernel_size=3, width=4, image_size=SIZE)


def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark class 0, bright class 1, 8x8 uint8 images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % 2
    base = torch.where(y == 1, 170, 60).view(-1, 1, 1, 1)
    x = (base + torch.randint(-40, 41, (N, 3, SIZE, SIZE), generator=g)).clamp(0, 255).to(torch.uint8)
    return x, y.long()


TRAIN, TEST = data(0), data(1)


def settings(**kw) -> TrainSettings:
    """16 images per step: an epoch is 4 steps, so a stop at step 6 is inside an epoch's permutation."""
    base = dict(steps=STEPS, lr=0.01, batch_size=16, weight_decay=1e-3, augment=True, train_eval_size=40,
                snapshot_steps=log_schedule(STEPS, 4), eval_steps=(5, 10), eval_batch_size=32, device="cpu",
                precision="float32", log_every=STEPS // 10)  # fmt: skip
    return TrainSettings(**{**base, **kw})


def quiet(_: str) -> None:
    pass


def stop_after(flag: StopFlag, step: int) -> Callable[[str], None]:
    """A log callback that requests a stop when the loop reports `step` (reports come every STEPS // 10 steps)."""

    def log(message: str) -> None:
        if message.startswith(f"step {step}/"):
            flag.request()

    return log


def run_one(arch: str, s: TrainSettings, **kw):
    model = init_model(arch, seed=0, **MODEL_KW)
    result = train(model, arch, TRAIN, TEST, MEAN, STD, s, **{"log": quiet, **kw})
    return model, result


def assert_bitwise(a, b) -> None:
    """Same snapshots and metrics, bit for bit."""
    assert list(a.snapshots) == list(b.snapshots)
    for step, w in a.snapshots.items():
        assert torch.equal(w, b.snapshots[step]), step
    assert a.metrics.equals(b.metrics)


def assert_same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()  # parameters and buffers (BatchNorm statistics)
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def saved_step(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["step"])


# ------------------------------------------------------------------------ in process


@pytest.mark.parametrize(
    ("arch", "optimizer", "lr", "labels", "precision"),
    [("linear", "sgd", 0.01, "true", "float32"), ("linear", "adam", 0.003, "random", "float32"),
     ("small_cnn", "sgd", 0.01, "frozen", "float32"), ("small_cnn", "adam", 0.003, "true", "float32"),
     ("small_cnn", "sgd", 0.01, "random", "bfloat16"),
     pytest.param("resnet20", "sgd", 0.01, "true", "float32", marks=pytest.mark.skipif(  # BatchNorm buffers
         "resnet20" not in MODELS, reason="no resnet20 in firstlayer.models"))],  # resnet18 is slow
)  # fmt: skip
def test_train_stopped_and_resumed_equals_uninterrupted(tmp_path, arch, optimizer, lr, labels, precision):
    s = settings(optimizer=optimizer, lr=lr, labels=labels, precision=precision)
    ref_model, ref = run_one(arch, s)
    path = tmp_path / "seed0.resume.pt"
    flag = StopFlag()
    with pytest.raises(TrainingInterrupted, match="after step 6") as stopped:
        run_one(arch, s, checkpoint=path, stop=flag, log=stop_after(flag, 6))
    assert stopped.value.step == 6 and stopped.value.checkpoint == path
    assert saved_step(path) == 6
    messages: list[str] = []
    model, resumed = run_one(arch, s, checkpoint=path, stop=StopFlag(), log=messages.append)
    assert any(m.startswith("resuming from checkpoint") and "after step 6" in m for m in messages)
    assert not any(m.startswith("step 6/") for m in messages)  # the first six steps are not trained again
    assert_bitwise(ref, resumed)
    assert_same_model(ref_model, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0.resume.pt"]  # no temporary file left


@pytest.mark.parametrize("labels", ["random", "frozen"])
def test_stacked_seeds_stopped_twice_and_resumed_equal_uninterrupted(tmp_path, labels):
    arch, s = "linear", settings(optimizer="adam", lr=0.003, labels=labels)
    kw = {**MODEL_KW, "init_scale": 0.5}
    ref = train_seeds(arch, kw, TRAIN, TEST, MEAN, STD, s, [0, 3], log=quiet)
    path = tmp_path / "seed0+3.resume.pt"
    for step in (4, 14):  # the second run resumes from the first stop, the third from the second
        flag = StopFlag()
        with pytest.raises(TrainingInterrupted):
            train_seeds(arch, kw, TRAIN, TEST, MEAN, STD, s, [0, 3], log=stop_after(flag, step), checkpoint=path,
                        stop=flag)  # fmt: skip
        assert saved_step(path) == step
    resumed = train_seeds(arch, kw, TRAIN, TEST, MEAN, STD, s, [0, 3], log=quiet, checkpoint=path)
    for a, b in zip(ref, resumed, strict=True):
        assert_bitwise(a, b)


def test_seeds_one_after_another_stopped_in_the_second_resume_it_from_its_own_checkpoint(tmp_path):
    """Seeds that are not stacked (the small CNN) train in turn, each with its own checkpoint beside the job's: a
    stop in the second seed saves that seed's progress; the rerun trains the first again and resumes the second."""
    s = settings(optimizer="adam", lr=0.003, labels="frozen")
    ref = train_seeds("small_cnn", MODEL_KW, TRAIN, TEST, MEAN, STD, s, [0, 3], log=quiet)
    path, flag, lines = tmp_path / "seed0+3.resume.pt", StopFlag(), []

    def log(message: str) -> None:  # the second "step 14/" line is the second seed's
        lines.append(message)
        if sum(line.startswith("step 14/") for line in lines) == 2:
            flag.request()

    with pytest.raises(TrainingInterrupted, match="after step 14"):
        train_seeds("small_cnn", MODEL_KW, TRAIN, TEST, MEAN, STD, s, [0, 3], log=log, checkpoint=path, stop=flag)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0+3.resume.seed3.pt"]
    assert saved_step(seed_checkpoint(path, 3)) == 14
    messages: list[str] = []
    resumed = train_seeds("small_cnn", MODEL_KW, TRAIN, TEST, MEAN, STD, s, [0, 3], log=messages.append,
                          checkpoint=path)  # fmt: skip
    assert [m for m in messages if m.startswith("resuming")] == [f"resuming from checkpoint {path.parent}/"
                                                                 "seed0+3.resume.seed3.pt after step 14"]  # fmt: skip
    for a, b in zip(ref, resumed, strict=True):
        assert_bitwise(a, b)
    assert checkpoint_files(path, [0, 3]) == [path, seed_checkpoint(path, 0), seed_checkpoint(path, 3)]
    assert checkpoint_files(path, [0]) == [path]


def test_checkpoints_every_few_minutes_and_not_otherwise(tmp_path):
    s = settings()
    _, ref = run_one("linear", s)
    never = tmp_path / "never.pt"
    run_one("linear", s, checkpoint=never, checkpoint_minutes=0)  # 0: only when stopped
    assert not never.exists()
    often = tmp_path / "often.pt"
    messages: list[str] = []
    run_one("linear", s, checkpoint=often, checkpoint_minutes=1e-9, log=messages.append)  # due before every step
    assert sum(m.startswith("checkpoint saved") for m in messages) == STEPS
    assert saved_step(often) == STEPS - 1  # the last save is before the last step
    _, resumed = run_one("linear", s, checkpoint=often)  # one step left to train
    assert_bitwise(ref, resumed)


def test_checkpoint_of_another_run_is_not_resumed(tmp_path):
    """Other settings (here lr) or an unreadable file: a warning, a fresh start, the right result."""
    path = tmp_path / "seed0.resume.pt"
    flag = StopFlag()
    with pytest.raises(TrainingInterrupted):
        run_one("linear", settings(lr=0.02), checkpoint=path, stop=flag, log=stop_after(flag, 6))
    _, ref = run_one("linear", settings())
    messages: list[str] = []
    _, fresh = run_one("linear", settings(), checkpoint=path, log=messages.append)
    assert any(m.startswith("warning:") and "other settings" in m for m in messages)
    assert not any(m.startswith("resuming") for m in messages)
    assert_bitwise(ref, fresh)
    path.write_bytes(b"not a checkpoint")
    messages.clear()
    _, fresh = run_one("linear", settings(), checkpoint=path, log=messages.append)
    assert any(m.startswith("warning: cannot read checkpoint") for m in messages)
    assert_bitwise(ref, fresh)
    # another init (seed of the model) is another run too
    other = init_model("linear", seed=1, **MODEL_KW)
    flag = StopFlag()
    with pytest.raises(TrainingInterrupted):
        train(other, "linear", TRAIN, TEST, MEAN, STD, settings(), checkpoint=path, stop=flag, log=stop_after(flag, 6))
    messages.clear()
    run_one("linear", settings(), checkpoint=path, log=messages.append)
    assert any("other settings, data or init" in m for m in messages)


def test_stop_without_a_checkpoint_path_saves_nothing(tmp_path):
    flag = StopFlag()
    with pytest.raises(TrainingInterrupted, match="no checkpoint path") as stopped:
        run_one("linear", settings(), stop=flag, log=stop_after(flag, 2))
    assert stopped.value.step == 2 and stopped.value.checkpoint is None
    assert not list(tmp_path.iterdir())


def test_stop_on_signals_sets_the_flag_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with stop_on_signals() as flag:
        assert not flag.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.requested and flag.signal == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is before
    message = str(TrainingInterrupted(3, Path("x.pt"), signal.SIGTERM))
    assert "SIGTERM" in message and "after step 3" in message and "x.pt" in message


# ------------------------------------------------------------------------ a real process and SIGTERM


def small_job():
    """Model, data, statistics and settings of the job run as a subprocess (and in process for the reference)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (256, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    y = (x.float().mean((1, 2, 3)) > 127.5).long()
    s = TrainSettings(steps=40, lr=0.003, batch_size=24, optimizer="adam", augment=True, snapshot_steps=(5, 10, 20),
                      eval_steps=(10,), device="cpu", precision="float32", log_every=4)  # fmt: skip
    model = init_model("small_cnn", seed=0, **MODEL_KW)
    return model, (x, y), (x[:64], y[:64]), MEAN, STD, s


#: The job: argv = this folder, checkpoint path, output file, seconds to pause after each progress line (a window
#: in which to signal it; pausing does not change the result). Stopped, it exits as the training script does.
DRIVER = """
import sys, time
import torch
sys.path.insert(0, sys.argv[1])
from test_resume import small_job
from firstlayer.resume import INTERRUPTED_EXIT_CODE, TrainingInterrupted, stop_on_signals
from firstlayer.train import train

torch.set_num_threads(1)  # as the tests run: the same reductions, the same bits
checkpoint, out, pause = sys.argv[2], sys.argv[3], float(sys.argv[4])


def log(message):
    print(message, flush=True)
    time.sleep(pause)


model, *job = small_job()
with stop_on_signals() as stop:
    try:
        result = train(model, "small_cnn", *job, log=log, checkpoint=checkpoint, checkpoint_minutes=0, stop=stop)
    except TrainingInterrupted as error:
        print(error, flush=True)
        sys.exit(INTERRUPTED_EXIT_CODE)
torch.save({"model": model.state_dict(), "snapshots": result.snapshots, "metrics": result.metrics}, out)
"""


def driver(checkpoint: Path, out: Path, pause: float) -> list[str]:
    return [sys.executable, "-c", DRIVER, str(Path(__file__).parent), str(checkpoint), str(out), str(pause)]


def test_sigterm_stops_a_job_which_a_rerun_finishes_bitwise(tmp_path):
    ckpt, out = tmp_path / "job.resume.pt", tmp_path / "job.pt"
    job = subprocess.Popen(driver(ckpt, out, 0.3), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in job.stdout:  # wait for a progress line: the job is in its step loop
            seen.append(line)
            if line.startswith("step "):
                job.send_signal(signal.SIGTERM)
                break
        seen.append(job.stdout.read())
        assert job.wait(timeout=60) == INTERRUPTED_EXIT_CODE, "".join(seen)
    finally:
        job.kill()
        job.stdout.close()
    assert "stopped by SIGTERM" in "".join(seen)
    assert ckpt.exists() and 0 < saved_step(ckpt) < 40 and not out.exists()
    rerun = subprocess.Popen(driver(ckpt, out, 0), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    model, *job_inputs = small_job()  # the uninterrupted reference, while the rerun runs
    reference = train(model, "small_cnn", *job_inputs, log=quiet)
    output = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, output
    assert f"resuming from checkpoint {ckpt} after step {saved_step(ckpt)}" in output
    resumed = torch.load(out, weights_only=False)
    assert_bitwise(reference, SimpleNamespace(**resumed))
    assert all(torch.equal(w, resumed["model"][name]) for name, w in model.state_dict().items())
