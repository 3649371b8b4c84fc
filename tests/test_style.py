"""The house rules CI holds: ruff, snakefmt --check and snakemake --lint are clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_is_clean() -> None:
    proc = run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run("ruff", "format", "--check", "workflow", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("snakefmt") is None, reason="snakefmt is not installed (pip install -e '.[test]')")
def test_snakefmt_is_clean() -> None:
    proc = run("snakefmt", "--check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_is_clean() -> None:
    proc = run(sys.executable, "-m", "snakemake", "--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_every_rule_declares_the_house_fields() -> None:
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    for path in rules:
        text = path.read_text()
        for block in re.split(r"^rule ", text, flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            for field in ("input:", "output:", "log:", "benchmark:", "threads:", "resources:", "conda:", "script:"):
                if field == "input:" and name == "prepare_dataset":
                    continue  # reads the embedded photos or the configured root, not a workflow file
                assert field in block, f"rule {name} in {path.name} lacks {field}"
            if name == "train":
                assert "gpu=train_gpu" in block
