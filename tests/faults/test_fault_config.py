"""Configuration faults, stopped before any job with one message naming what to fix: numbers PyYAML leaves as
strings, `--config` overrides, embedded photo names, image folders, batch sizes and config files that do not
parse; and the recovery of a run whose Snakemake was killed (README, *Resuming*)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.utils import update_config

from firstlayer.config import ConfigError, config_file_problem, validate_config

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"


@pytest.fixture
def smoke() -> dict:
    with open(SMOKE) as fh:
        return yaml.safe_load(fh)


def rejected(config: dict) -> str:
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    return str(error.value)


def dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--cores", "1", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


# ------------------------------------------------------------------ numbers PyYAML and --config leave as strings


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [("lr: 1e-3", "lr", 1e-3), ("lr: 5E-4", "lr", 5e-4), ("weight_decay: 1e-4", "weight_decay", 1e-4)],
)
def test_a_number_in_exponent_notation_is_a_number(smoke, line, key, value):
    written = yaml.safe_load(line)
    assert written[key] == line.split(": ")[1]  # PyYAML (YAML 1.1) reads it as a string
    smoke["architectures"]["small_cnn"].update(written)
    arch = validate_config(smoke)["architectures"]["small_cnn"]
    assert arch[key] == value and isinstance(arch[key], float)


def test_nested_command_line_values_are_read_as_yaml(smoke):
    # exactly what Snakemake 9 makes of `--config KEY=VALUE ...`: a nested value's scalars are all strings
    overrides = parse_config([
        "architectures={small_cnn: {lr: 0.01, kernel_size: 3, steps: 1e2, augment: true}}",
        "training={checkpoint_minutes: 5, compile: false}",
        "grid=[{datasets: [rotations], architectures: [small_cnn], labels: [true], seeds: [0, 1]}]",
    ])  # fmt: skip
    assert overrides["architectures"]["small_cnn"]["lr"] == "0.01"
    update_config(smoke, overrides)
    config = validate_config(smoke)
    arch = config["architectures"]["small_cnn"]
    assert (arch["lr"], arch["kernel_size"], arch["steps"], arch["augment"], arch["width"]) == (0.01, 3, 100, True, 8)
    assert type(arch["kernel_size"]) is int and type(arch["steps"]) is int
    assert config["training"]["checkpoint_minutes"] == 5 and config["training"]["compile"] is False
    assert config["grid"] == [{"datasets": ["rotations"], "architectures": ["small_cnn"], "labels": ["true"],
                               "seeds": [0, 1]}]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("lr", "nan", "'nan' is not of type 'number' (Learning rate.)"),
        ("lr", "inf", "'inf' is not of type 'number' (Learning rate.)"),
        ("batch_size", "0.5", "'0.5' is not of type 'integer' (Training batch size.)"),
        ("augment", "1", "'1' is not of type 'boolean'"),
    ],
)
def test_a_string_that_is_not_the_number_asked_for_stays_an_error(smoke, key, text, message):
    smoke["architectures"]["small_cnn"][key] = text
    assert f"config key 'architectures.small_cnn.{key}': {message}" in rejected(smoke)


def test_a_string_where_a_mapping_belongs_says_how_to_write_it(smoke):
    smoke["training"] = "{precision: float32"  # an unclosed mapping on the command line arrives as this string
    assert rejected(smoke) == (
        "invalid configuration:\n  config key 'training': '{precision: float32' is not of type 'object'; on the "
        "command line write a nested value as YAML, e.g. --config 'training={precision: float32}' (Settings shared "
        "by every training run.)"
    )


# ------------------------------------------------------------------ datasets, checked before any job


def test_unknown_and_repeated_photo_names(smoke):
    smoke["datasets"]["photos"]["photos"] = ["astronaut", "cofee", "astronaut"]
    assert rejected(smoke) == (
        "invalid configuration:\n"
        "  config key 'datasets.photos.photos': unknown photo 'cofee'; the embedded photos are: astronaut, chelsea, "
        "coffee, rocket, hubble_deep_field, immunohistochemistry, retina, motorcycle, china, flower\n"
        "  config key 'datasets.photos.photos': 'astronaut' listed more than once; list each photo once"
    )


def folder_config(smoke: dict, root: Path) -> dict:
    smoke["datasets"]["pictures"] = {"source": "folder", "root": str(root)}
    smoke["grid"][0]["datasets"].append("pictures")
    return smoke


def test_a_missing_image_folder(smoke, tmp_path):
    root = tmp_path / "nowhere"
    assert rejected(folder_config(smoke, root)) == (
        f"invalid configuration:\n  config key 'datasets.pictures.root': {root} is not a folder; point it at a "
        "folder with one sub-folder of images per class"
    )


@pytest.mark.parametrize("layout", ["flat", "splits"])
def test_an_image_folder_with_one_class(smoke, tmp_path, layout):
    base = tmp_path / "train" if layout == "splits" else tmp_path
    (base / "cats").mkdir(parents=True)
    (base / ".cache").mkdir()  # hidden folders are not classes
    if layout == "splits":
        (tmp_path / "val" / "cats").mkdir(parents=True)
    assert rejected(folder_config(smoke, tmp_path)) == (
        f"invalid configuration:\n  config key 'datasets.pictures.root': {base} has only one class sub-folder "
        "(cats); an image folder needs one sub-folder of images per class, at least two"
    )
    (base / "dogs").mkdir()
    validate_config(folder_config(smoke, tmp_path))


def test_an_unused_image_folder_is_not_looked_at(smoke, tmp_path):
    smoke["datasets"]["pictures"] = {"source": "folder", "root": str(tmp_path / "nowhere")}
    validate_config(smoke)


def test_a_batch_larger_than_the_training_set(smoke):
    smoke["architectures"]["small_cnn"]["batch_size"] = 512
    assert rejected(smoke) == (
        "invalid configuration:\n  config key 'architectures.small_cnn.batch_size': 512 is larger than the 96 "
        "training images of dataset 'rotations' (grid block 1); lower it to at most 96 or raise "
        "'datasets.rotations.train_per_class'"
    )
    smoke["architectures"]["small_cnn"]["batch_size"] = 96  # 4 rotations x 24 crops: one full batch is allowed
    validate_config(smoke)


def test_a_batch_larger_than_a_cifar_subset(smoke):
    smoke["datasets"]["cifar"] = {"source": "cifar10", "root": "/nowhere", "max_train": 50}
    smoke["architectures"]["small_cnn"]["batch_size"] = 64  # resnet18's 8 fits
    smoke["grid"].append({"datasets": ["cifar"], "architectures": ["resnet18", "small_cnn"], "labels": ["true"]})
    assert rejected(smoke) == (
        "invalid configuration:\n  config key 'architectures.small_cnn.batch_size': 64 is larger than the 50 training "
        "images of dataset 'cifar' (grid block 3); lower it to at most 50 or raise 'datasets.cifar.max_train'"
    )


# ------------------------------------------------------------------ config files


def test_a_yaml_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("datasets:\n  a: {source: embedded\ngrid: []\n")
    assert config_file_problem(path) == (
        f"config file {path}, line 3, column 5: expected ',' or '}}', but got ':' (while parsing a flow mapping "
        "that starts on line 2)"
    )
    path.write_text("datasets:\n  a:\n\tsource: embedded\n")
    assert config_file_problem(path) == f"config file {path}, line 3, column 1: found character '\\t' that cannot " \
                                        "start any token"  # fmt: skip
    path.write_text(SMOKE.read_text())
    assert config_file_problem(path) is None


def test_a_missing_config_file(tmp_path, monkeypatch):
    missing = "No such file or directory"
    assert config_file_problem(tmp_path / "my.yaml") == f"cannot read config file {tmp_path}/my.yaml: {missing}"
    monkeypatch.chdir(tmp_path)  # a relative path is shown where it was looked for
    expected = f"cannot read config file config.yaml (here {tmp_path}/config.yaml): {missing}"
    assert config_file_problem("config.yaml") == expected


def test_the_workflow_names_the_line_of_a_yaml_error_in_config_yaml(tmp_path):
    (tmp_path / "config.yaml").write_text("datasets:\n  a: {source: embedded\ngrid: []\n")
    proc = dry_run(tmp_path)
    assert proc.returncode != 0
    assert "firstlayer: config file config.yaml, line 3, column 5: expected ',' or '}', but got ':'" in proc.stderr
    assert "Traceback" not in proc.stderr and "not valid JSON or YAML" not in proc.stderr


def test_the_readme_command_line_overrides_validate_before_any_job(tmp_path):
    ok = dry_run(tmp_path, "--configfile", str(SMOKE), "--config", "architectures={small_cnn: {lr: 1e-3, steps: 40}}",
                 "training={precision: float32, checkpoint_minutes: 5}")  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = dry_run(tmp_path, "--configfile", str(SMOKE), "--config", "architectures={small_cnn: {batch_size: 512}}")
    assert bad.returncode != 0
    assert "config key 'architectures.small_cnn.batch_size': 512 is larger than the 96 training images" in bad.stderr
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------------ a killed Snakemake


def test_the_local_profile_reruns_incomplete_jobs():
    with open(REPO / "workflow" / "profiles" / "local" / "config.yaml") as fh:
        assert yaml.safe_load(fh)["rerun-incomplete"] is True


def live_members(group: int) -> list[int]:
    """Processes of a process group that have not exited (zombies excluded)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] not in "ZX":
            alive.append(int(stat.parent.name))
    return alive


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


TINY = {
    "datasets": {"rotations": {"source": "embedded", "labels": "rotation", "photos": ["chelsea", "china"],
                               "train_per_class": 16, "test_per_class": 4}},
    "architectures": {"cnn": {"model": "small_cnn", "kernel_size": 3, "width": 8, "lr": 0.01, "batch_size": 16,
                              "steps": 3000}},
    "grid": [{"datasets": ["rotations"], "architectures": ["cnn"], "labels": ["true"], "seeds": [0]}],
    "training": {"device": "cpu", "eval_points": 1},
}  # fmt: skip


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
def test_after_kill_9_unlock_then_rerun_incomplete_recovers(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    target = "results/train/rotations/cnn/true/seed0/metrics.parquet"
    cmd = [sys.executable, "-m", "snakemake", target, "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(tmp_path), "--cores", "1", "--configfile", "tiny.yaml"]  # fmt: skip
    run = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_for(lambda: (tmp_path / "results/logs/train/rotations/cnn/true/seed0.log").exists(), 600)
    os.kill(run.pid, signal.SIGKILL)  # Snakemake only: its training job runs on and writes its outputs
    run.wait()
    wait_for(lambda: not live_members(run.pid), 600)
    assert (tmp_path / target).exists()

    def again(*args: str) -> str:
        """The same command with `args`: its exit status and its output (Snakemake logs to stdout and stderr)."""
        proc = subprocess.run([*cmd, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=600)  # fmt: skip
        return f"rc {proc.returncode}\n{proc.stdout}"

    assert "LockException" in again()  # the same command again stops at the lock the killed Snakemake left
    assert again("--unlock").startswith("rc 0")
    # then it reruns the job whose outputs were never marked complete: profiles/default (which Snakemake reads when
    # no other profile is given) and the local profile both set rerun-incomplete
    for flags in ([], ["--workflow-profile", str(REPO / "workflow" / "profiles" / "local")]):
        output = again("-n", *flags)
        assert output.startswith("rc 0") and re.search(r"^train +1$", output, re.M), output[-3000:]  # reruns it


# ------------------------------------------------------------------ reuse


def test_the_license_and_citation_match_the_package():
    with open(REPO / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["license"] == {"text": "MIT"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 the firstlayer authors\n")
    with open(REPO / "CITATION.cff") as fh:
        cff = yaml.safe_load(fh)
    assert (cff["cff-version"], cff["license"], cff["version"]) == ("1.2.0", "MIT", project["version"])
    paper = cff["references"][0]
    assert paper["title"] == "What do CNNs Learn in the First Layer and Why? A Linear Systems Perspective"
    assert (paper["volume"], paper["start"], paper["end"], paper["year"]) == (202, 6115, 6139, 2023)
    assert [a["family-names"] for a in paper["authors"]] == ["Chowers", "Weiss"]
