"""Shared test set-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny tensors: a second intra-op thread costs far more than it saves (and stalls on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One end-to-end run of the smoke configuration, shared by the workflow and report tests (read-only for them:
    they dry-run against it or add files beside results/)."""
    workdir = tmp_path_factory.mktemp("smoke")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(SMOKE), "--cores", "2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return workdir


@pytest.fixture
def hub_dir(tmp_path: Path):
    """torch.hub pointed at an empty temporary folder (restored afterwards)."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)
