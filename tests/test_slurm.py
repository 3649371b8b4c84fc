"""SLURM: the smoke configuration through workflow/profiles/slurm on a real single-node SLURM, against a local run.

The module fixture installs Debian's SLURM 22.05, MUNGE and MariaDB when they are missing (tests/slurm/install.sh)
and starts a cluster on localhost with accounting and two fake GPUs (tests/slurm/start.sh); its finaliser stops
exactly the daemons it started (tests/slurm/stop.sh), also when a test fails. The tests marked `slurm` skip only
where apt-get cannot install SLURM (not root, no apt-get, no package source); the resource test needs no cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"
SCRIPTS = REPO / "tests" / "slurm"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
PARTITION = "firstlayer"  # the partition tests/slurm/start.sh makes
#: Columns that say what produced a table rather than what is in it.
PROVENANCE = ["config_hash", "firstlayer_version", "torch_version", "numpy_version", "python_version"]
#: The tables compared between the SLURM run and the local run.
TABLES = [
    "results/tables/energy.parquet",
    "results/tables/fits.parquet",
    "results/patches/photos/k3/pca.parquet",
    "results/patches/rotations/k3/pca.parquet",
    "results/patches/rotations/k5/pca.parquet",
]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running local SLURM; yields the environment for its commands (which read /etc/slurm)."""
    install = subprocess.run(["bash", str(SCRIPTS / "install.sh")], capture_output=True, text=True, timeout=900)
    if install.returncode == 77:
        pytest.skip(f"no local SLURM: {install.stderr.strip()}")
    assert install.returncode == 0, install.stdout + install.stderr
    state = tmp_path_factory.mktemp("slurm_state")
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    try:
        start = subprocess.run(
            ["bash", str(SCRIPTS / "start.sh"), str(state)], capture_output=True, text=True, timeout=300, env=env
        )
        assert start.returncode == 0, f"tests/slurm/start.sh failed:\n{start.stdout}\n{start.stderr}"
        yield env
    finally:
        stop = subprocess.run(
            ["bash", str(SCRIPTS / "stop.sh"), str(state)], capture_output=True, text=True, timeout=300, env=env
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr


def profile_defaults() -> list[str]:
    """The slurm profile's default-resources as command-line items (name=value)."""
    settings = yaml.safe_load(PROFILE.joinpath("config.yaml").read_text())
    return [f"{name}={value}" for name, value in settings["default-resources"].items()]


def snakemake(workdir: Path, *args: str, configfile: Path = SMOKE) -> list[str]:
    return [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(configfile),
        *args,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(slurm: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The smoke workflow on SLURM, and meanwhile the compared tables made by a local run."""
    local_dir, slurm_dir = tmp_path_factory.mktemp("local_run"), tmp_path_factory.mktemp("slurm_run")
    # training.device auto: the training jobs ask for a GPU (a fake one: they train on the CPU, as the local run)
    config = yaml.safe_load(SMOKE.read_text())
    config["training"]["device"] = "auto"
    auto = tmp_path_factory.mktemp("config") / "smoke_auto.yaml"
    auto.write_text(yaml.safe_dump(config))
    plan = [
        dry_run(slurm_dir, configfile=auto)
    ]  # the patch shards are known once the datasets are prepared (a checkpoint)
    with open(local_dir / "snakemake.out", "w") as local_log:
        local = subprocess.Popen(snakemake(local_dir, "--cores", "1", *TABLES, configfile=auto), stdout=local_log,
                                 stderr=local_log)  # fmt: skip
        try:
            start = time.monotonic()
            proc = subprocess.run(
                snakemake(
                    slurm_dir,
                    "--workflow-profile", str(PROFILE),
                    # test-only: the local cluster's partition, no 40 s wait before the first status check, and
                    # the SLURM logs of successful jobs kept (they say which jobs each SLURM job ran); the
                    # command line's default-resources replace the profile's, so they are repeated
                    "--default-resources", *profile_defaults(), f"slurm_partition={PARTITION}",
                    "--slurm-init-seconds-before-status-checks", "5",
                    "--slurm-keep-successful-logs",
                    configfile=auto,
                ),
                capture_output=True, text=True, timeout=1800, env=slurm,
            )  # fmt: skip
            seconds = time.monotonic() - start
        finally:
            local.wait(timeout=1800)
    (slurm_dir / "snakemake.out").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert local.returncode == 0, (local_dir / "snakemake.out").read_text()[-6000:]
    print(f"\nSLURM run of the smoke configuration: {seconds:.0f} s")
    plan.append(dry_run(slurm_dir, "--forcerun", "patch_shard", configfile=auto))
    return {"local": local_dir, "slurm": slurm_dir, "output": proc.stdout + proc.stderr, "plan": "\n".join(plan)}


def dry_run(workdir: Path, *args: str, configfile: Path = SMOKE) -> str:
    """What a dry run plans: its jobs as Snakemake announces them."""
    proc = subprocess.run(snakemake(workdir, "--dry-run", *args, configfile=configfile), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def announced_jobs(output: str, *, indented: bool = True) -> tuple[set, set]:
    """(rule, wildcards) of the jobs a Snakemake output announces: (cluster jobs, local-rule jobs). With
    indented=False only top-level announcements count (the members of a group job are indented)."""
    jobs: set = set()
    local: set = set()
    current = None
    for line in [*output.splitlines(), "rule end:"]:
        if m := re.match(r"^(\s*)(local)?(?:rule|checkpoint) (\w+):", line):
            if current is not None:
                (local if current[0] else jobs).add(current[1:])
            current = None if (m.group(1) and not indented) else (bool(m.group(2)), m.group(3), "")
        elif current is not None and (m := re.match(r"^\s+wildcards: (.*)$", line)):
            current = (*current[:2], m.group(1))
    return jobs, local


def sacct(env: dict[str, str]) -> pd.DataFrame:
    """Every job of the local cluster (started afresh for this module)."""
    columns = ["JobIDRaw", "State", "Comment", "ReqTRES", "AllocTRES"]
    proc = subprocess.run(
        ["sacct", "-X", "-a", "-n", "--parsable2", "--starttime", "now-1days", f"--format={','.join(columns)}"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    return pd.DataFrame([line.split("|") for line in proc.stdout.splitlines() if line], columns=columns)


def local_rules() -> set[str]:
    """Rules the parsed workflow runs locally (`localrules:`, `localrule: True` of the generated figure rules, and
    the target rule `all`)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with tempfile.TemporaryDirectory() as tmp, SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            ResourceSettings(), ConfigSettings(configfiles=[SMOKE]), snakefile=REPO / "Snakefile", workdir=Path(tmp)
        )._workflow
        return {rule.name for rule in workflow.rules if rule.name in workflow._localrules or rule.norun}


@pytest.mark.slurm
def test_every_cluster_job_ran_as_a_slurm_job(runs: dict, slurm: dict[str, str]) -> None:
    plan, _ = announced_jobs(runs["plan"])  # a dry run does not mark the local rules
    local = local_rules()
    planned = {job for job in plan if job[0] not in local}
    planned_local = plan - planned
    assert {rule for rule, _ in planned} >= {"prepare_dataset", "patch_shard", "patch_pca", "train"}
    assert {"energy_profile", "collect_energy", "fit_formula", "all"} <= {rule for rule, _ in planned_local}
    # the energy profiles, small aggregation and figure jobs ran beside Snakemake
    _, ran_local = announced_jobs(runs["output"], indented=False)
    assert ran_local == planned_local
    jobs = sacct(slurm)
    assert (jobs.State == "COMPLETED").all(), jobs
    # each SLURM job's log names the workflow jobs it ran: together, every planned cluster job, once
    ran: Counter = Counter()
    for job_id in jobs.JobIDRaw:
        [log] = (runs["slurm"] / ".snakemake" / "slurm_logs").rglob(f"{job_id}.log")
        ran.update(announced_jobs(log.read_text())[0] | announced_jobs(log.read_text())[1])
    assert ran == Counter(planned)
    # grouping: a PCA's shards, their sum and its label information ran as one SLURM job
    assert len(jobs) < len(planned)
    assert jobs.Comment.str.contains("patch_shard").sum() < sum(rule == "patch_shard" for rule, _ in planned)
    print(f"{len(planned)} cluster jobs as {len(jobs)} SLURM jobs, {len(planned_local)} local:")
    print(jobs.to_string(index=False))


@pytest.mark.slurm
def test_training_jobs_asked_for_a_gpu(runs: dict, slurm: dict[str, str]) -> None:
    jobs = sacct(slurm)
    train = jobs[jobs.Comment.str.startswith("rule_train_")]
    planned, _ = announced_jobs(runs["plan"])
    assert len(train) == sum(rule == "train" for rule, _ in planned) > 0
    assert train.ReqTRES.str.contains("gres/gpu=1").all(), train
    assert train.AllocTRES.str.contains("gres/gpu=1").all(), train
    assert train.AllocTRES.str.contains("cpu=2").all(), train  # cpus_per_task from the profile
    others = jobs[~jobs.Comment.str.startswith("rule_train_")]
    assert not others.ReqTRES.str.contains("gres/gpu").any(), others


@pytest.mark.slurm
@pytest.mark.parametrize("table", TABLES)
def test_results_equal_a_local_run(runs: dict, table: str) -> None:
    """Training on the CPU is deterministic: the cluster's tables equal the local ones (provenance aside)."""
    on_slurm = pd.read_parquet(runs["slurm"] / table).drop(columns=PROVENANCE)
    local = pd.read_parquet(runs["local"] / table).drop(columns=PROVENANCE)
    assert len(local) > 0
    pd.testing.assert_frame_equal(on_slurm, local, check_exact=True)


def planned_resources(workdir: Path, configfile: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, wildcards) -> resources of every job a dry run through the SLURM profile plans (no cluster needed)."""
    proc = subprocess.run(
        snakemake(workdir, "--dry-run", "--workflow-profile", str(PROFILE), configfile=configfile),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs, job = {}, None
    for line in proc.stdout.splitlines():
        if m := re.match(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):", line):
            job = [m.group(1), ""]
        elif job and (m := re.match(r"^\s+wildcards: (.*)$", line)):
            job[1] = m.group(1)
        elif job and (m := re.match(r"^\s+resources: (.*)$", line)):
            jobs[tuple(job)] = dict(item.split("=", 1) for item in m.group(1).split(", "))
    return jobs


def test_resources_scale_with_the_job_and_the_config(tmp_path: Path) -> None:
    """Runtime and memory follow each job and config["resources"]; only training asks for a GPU, and only when it
    will use one (not with training.device cpu, the smoke config's). Dry runs only."""
    config = yaml.safe_load(SMOKE.read_text())
    config["architectures"]["small_cnn"]["steps"] *= 1000
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump(config))
    config["resources"] = {"train": {"runtime_factor": 3, "mem_mb": 4321}, "prepare_dataset": {"mem_factor": 2}}
    scaled = tmp_path / "scaled.yaml"
    scaled.write_text(yaml.safe_dump(config))
    config = yaml.safe_load(SMOKE.read_text())
    config["training"]["device"] = "auto"
    auto = tmp_path / "auto.yaml"
    auto.write_text(yaml.safe_dump(config))
    plain, long, over, gpu = (planned_resources(tmp_path / name, path) for name, path in
                              (("plain", SMOKE), ("longer", longer), ("scaled", scaled), ("auto", auto)))  # fmt: skip
    train = [job for job in plain if job[0] == "train"]
    assert len(train) == 8 and all(plain[job]["gpu"] == "0" and plain[job]["cpus_per_task"] == "2" for job in train)
    assert all(gpu[job]["gpu"] == "1" for job in train)
    assert not any("gpu" in res for job, res in plain.items() if job[0] != "train")
    for job in train:
        runtime = int(long[job]["runtime"])
        if "small_cnn" in job[1]:  # 1000 times the steps: the CPU estimate grows with them
            assert runtime > 5 * int(plain[job]["runtime"]), (job, runtime)
        else:
            assert runtime == int(plain[job]["runtime"])
        assert int(over[job]["runtime"]) >= 3 * int(long[job]["runtime"]) - 3
        assert over[job]["mem_mb"] == "4321"
    # on the CPU (the smoke config's device) memory follows the model's activations
    linear, resnet = (int(plain[("train", f"dataset=rotations, arch={arch}, labels=true, seeds={seeds}")]["mem_mb"])
                      for arch, seeds in (("linear", "0+1"), ("resnet18", "0")))  # fmt: skip
    assert resnet > linear + 1000
    prepare = [job for job in plain if job[0] == "prepare_dataset"]
    assert len(prepare) == 2
    for job in prepare:
        assert int(over[job]["mem_mb"]) in (2 * int(plain[job]["mem_mb"]) - 1, 2 * int(plain[job]["mem_mb"]))
