"""The house rules CI holds: ruff, snakefmt --check and snakemake --lint are clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import workflow_rules

from firstlayer.codehash import code_hash

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


#: Resources every job gets without asking (Snakemake's own, and the profiles' default-resources).
IMPLICIT_RESOURCES = {"_nodes", "_cores", "tmpdir"}
PROFILES = ("local", "slurm")


def test_every_rule_declares_the_house_fields() -> None:
    rules = {rule.name: rule for rule in workflow_rules() if rule.name != "all"}
    # the parse sees the checkpoint and the rules generated from FIGURES, which a text search of the files missed
    assert rules["prepare_dataset"].is_checkpoint
    assert {"plot_profiles", "plot_matched_tau"} <= set(rules)
    for name, rule in rules.items():
        assert rule.log, f"rule {name} has no log"
        assert rule.benchmark, f"rule {name} has no benchmark"
        assert rule.conda_env, f"rule {name} has no conda env"
        assert rule.script, f"rule {name} has no script"
        # prepare_dataset reads the embedded photos or the configured root; the default config has no pretrained model
        if name not in ("prepare_dataset", "collect_pretrained"):
            assert rule.input, f"rule {name} has no input"
        assert rule.output, f"rule {name} has no output"


def test_every_rule_hashes_the_code_of_its_script() -> None:
    """Each rule's `code` param is the code hash of the script it runs (common.smk's code(name) names the script a
    second time, beside `script:`): a copy-pasted name would rerun a rule for another script's edits."""
    for rule in workflow_rules():
        if rule.name == "all":
            continue
        script = REPO / "workflow" / "rules" / rule.script
        assert rule.params.code == code_hash(script), f"rule {rule.name}: code param is not {script.name}'s hash"


def test_rules_write_no_default_valued_fields() -> None:
    """threads 1 and constant resources are the defaults (Snakemake's, the profiles' default-resources): a rule that
    writes them repeats them; what a rule declares is per job (an estimate from firstlayer.resources)."""
    for rule in workflow_rules():
        declared = {k: v for k, v in rule.resources.items() if k not in IMPLICIT_RESOURCES}
        constant = {
            k: v for k, v in declared.items() if not (callable(v) or getattr(v, "is_evaluable", lambda: False)())
        }
        assert not constant, f"rule {rule.name} declares constant resources {constant}: the profiles' defaults serve"
    text = "\n".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    assert not re.search(r"^\s*threads:\s*1\s*$", text, flags=re.M), "threads: 1 is the default"
    train = next(rule for rule in workflow_rules() if rule.name == "train")
    assert train.resources["gpu"].is_evaluable()  # training asks for a GPU unless training.device is cpu


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_give_the_default_resources(profile: str) -> None:
    import yaml

    settings = yaml.safe_load((REPO / "workflow" / "profiles" / profile / "config.yaml").read_text())
    defaults = settings.get("default-resources", {})
    assert {"mem_mb", "runtime"} <= set(defaults), f"workflow/profiles/{profile} lacks default mem_mb and runtime"
