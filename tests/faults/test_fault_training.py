"""Faults during training and in the code a job runs: a diverged run never reaches a table, progress is logged
every few steps, an oversized batch is recorded, and every job runs the package of its own checkout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import checkout

from firstlayer.settings import TrainSettings
from firstlayer.train import TrainingDiverged, init_model, train, train_seeds

REPO = Path(__file__).resolve().parents[2]
MEAN, STD = np.full(3, 127.5), np.full(3, 64.0)
MODEL_KW = dict(num_classes=2, kernel_size=3, width=4, image_size=8)


def data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 2


def settings(**kw) -> TrainSettings:
    base = dict(steps=30, lr=0.01, batch_size=16, snapshot_steps=(10,), eval_steps=(10,), train_eval_size=32,
                device="cpu", precision="float32", log_every=5)  # fmt: skip
    return TrainSettings(**{**base, **kw})


@pytest.mark.parametrize(("model", "lr"), [("linear", 1e4), ("small_cnn", 1e20)])
def test_a_diverging_run_fails_naming_the_step_and_what_to_try(model, lr):
    lines: list[str] = []
    with pytest.raises(TrainingDiverged) as error:
        train(init_model(model, seed=0, **MODEL_KW), model, data(), data(seed=1), MEAN, STD, settings(lr=lr),
              log=lines.append)  # fmt: skip
    message = str(error.value)
    assert re.search(r"the loss of seed 0 became (nan|inf|-inf) at step \d+ of 30", message), message
    assert f"lr {lr:g}" in message and f"lower the learning rate (e.g. lr: {lr / 10:g})" in message
    step = int(re.search(r"at step (\d+)", message).group(1))
    assert step <= 5 * (len([x for x in lines if x.startswith("step ")]) + 1)  # caught at the next progress line


def test_a_diverging_seed_fails_a_stacked_job_naming_that_seed():
    with pytest.raises(TrainingDiverged, match=r"the loss of seed 3 became .* at step \d+ of 30"):
        train_seeds("linear", MODEL_KW, data(), data(seed=1), MEAN, STD, settings(lr=1e4), [3, 4], log=lambda _: None)


def test_progress_lines_every_log_every_steps_with_loss_accuracy_rate_and_eta():
    lines: list[str] = []
    train(init_model("small_cnn", seed=0, **MODEL_KW), "small_cnn", data(), data(seed=1), MEAN, STD, settings(),
          log=lines.append)  # fmt: skip
    progress = [line for line in lines if line.startswith("step ")]
    assert [int(re.match(r"step (\d+)/30", line).group(1)) for line in progress] == [5, 10, 15, 20, 25, 30]
    pattern = r"step \d+/30  loss \d+\.\d{4}  train acc [01]\.\d{3} \(running batches\)  [\d,]+ images/s  " \
              r"elapsed \d+:\d\d:\d\d  ETA \d+:\d\d:\d\d"  # fmt: skip
    assert all(re.fullmatch(pattern, line) for line in progress), progress


def test_running_training_accuracy_counts_the_batches_it_trained_on():
    """With lr 0 the model stays at its init, and a window of 4 steps of 16 is one epoch of the 64 images: the running
    accuracy of each line is the init's accuracy on the training set."""
    lines: list[str] = []
    s = settings(lr=0.0, log_every=4, steps=8, train_eval_size=64)
    r = train(init_model("small_cnn", seed=0, **MODEL_KW), "small_cnn", data(), data(seed=1), MEAN, STD, s,
              log=lines.append)  # fmt: skip
    init_accuracy = r.metrics.query("step == 0 and metric == 'train_accuracy'").value.item()
    running = [float(re.search(r"train acc (\S+)", line).group(1)) for line in lines if line.startswith("step ")]
    assert running == [round(init_accuracy, 3)] * 2 and 0 < init_accuracy < 1


def test_a_batch_larger_than_the_training_set_is_reported_and_recorded():
    lines: list[str] = []
    result = train(init_model("linear", seed=0, **MODEL_KW), "linear", data(n=20), data(seed=1), MEAN, STD,
                   settings(batch_size=64), log=lines.append)  # fmt: skip
    assert any("batch_size 64 is larger than the 20 training images" in line for line in lines)
    assert result.extra["batch_size"] == 20


# ------------------------------------------------------------------------ whole jobs, through Snakemake

TINY = {
    "datasets": {"tiny": {"source": "embedded", "labels": "rotation", "photos": ["chelsea", "coffee"],
                          "train_per_class": 16, "test_per_class": 4}},
    "architectures": {"lin": {"model": "linear", "kernel_size": 3, "width": 4, "lr": 10000.0, "batch_size": 16,
                              "steps": 40}},
    "grid": [{"datasets": ["tiny"], "architectures": ["lin"], "labels": ["true"], "seeds": [0]}],
    "training": {"device": "cpu", "log_every": 10},
}  # fmt: skip


def snakemake(clone: Path, config: dict, *targets: str) -> subprocess.CompletedProcess:
    (clone / "tiny.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "1", "--configfile", "tiny.yaml"]
    return subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_a_diverged_job_fails_and_writes_no_table(tmp_path):
    clone = checkout(tmp_path / "clone")
    proc = snakemake(clone, TINY, "results/tables/energy.parquet")
    assert proc.returncode != 0
    log = (clone / "results/logs/train/tiny/lin/true/seed0.log").read_text()
    assert re.search(r"tiny/lin/true: training diverged: the loss of seed 0 became \S+ at step \d+ of 40", log), log
    assert "[tiny/lin/true/seed0] job tiny/lin/true, seeds [0]: 40 steps" in proc.stderr  # the console shows the run
    assert not list((clone / "results").glob("train/**/*.parquet"))
    assert not (clone / "results/tables").exists()


@pytest.mark.e2e
def test_each_checkout_runs_its_own_package(tmp_path):
    """Two clones side by side, neither of them the installed package: a line added to one clone's package shows in
    that clone's job log only."""
    first, second = checkout(tmp_path / "first"), checkout(tmp_path / "second")
    io = second / "workflow/firstlayer/io.py"
    marker = "this is the second checkout's package"
    io.write_text(
        io.read_text().replace(
            "        try:\n            yield\n", f"        try:\n            print({marker!r})\n            yield\n", 1
        )
    )
    assert marker in io.read_text()
    target = "results/data/tiny/manifest.parquet"
    for clone in (first, second):
        proc = snakemake(clone, {**TINY, "architectures": {"lin": {**TINY["architectures"]["lin"], "lr": 0.01}}},
                         target)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    logs = {clone.name: (clone / "results/logs/prepare_dataset/tiny.log").read_text() for clone in (first, second)}
    assert marker not in logs["first"] and marker in logs["second"], logs
