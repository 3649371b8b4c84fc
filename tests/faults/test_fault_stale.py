"""Nothing stale, nothing mixed: an edit to the package reruns exactly the jobs whose code changed (and what depends
on them), every table and intermediate says what made it and its readers check that, settings that change no result
invalidate nothing, and Ctrl-C keeps a training job's progress for the same command run again."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import REPO, SMOKE, checkout, measured_imports, planned_jobs, snakemake, workflow_rules

from firstlayer.codehash import import_closure
from firstlayer.config import non_result_settings, result_settings, validate_config
from firstlayer.datasets import channel_stats, prepare_dataset
from firstlayer.io import (
    PROVENANCE,
    InputMismatch,
    Stamp,
    check_keys,
    load_dataset,
    read_table,
    read_tables,
    save_dataset,
    stamp,
    write_table,
)
from firstlayer.resume import stop_on_signals
from firstlayer.runs import job_tables, run_job

SCRIPTS = REPO / "workflow" / "scripts"
TINY = {
    "datasets": {"tiny": {"source": "embedded", "labels": "rotation", "photos": ["chelsea", "coffee"],
                          "train_per_class": 8, "test_per_class": 2}},
    "architectures": {
        "lin": {"model": "linear", "kernel_size": 3, "width": 4, "lr": 0.01, "batch_size": 8, "steps": 12,
                "seeds_per_job": 2},
        "cnn": {"model": "small_cnn", "kernel_size": 3, "width": 4, "lr": 0.01, "batch_size": 8, "steps": 12},
    },
    "grid": [{"datasets": ["tiny"], "architectures": ["lin"], "labels": ["true"], "seeds": [0, 1]},
             {"datasets": ["tiny"], "architectures": ["cnn"], "labels": ["random"], "seeds": [0]}],
    "snapshots": {"count": 3},
    "training": {"device": "cpu", "eval_points": 2, "train_eval_size": 16},
}  # fmt: skip


def table(rule: str, code: str, **columns) -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0], **columns}).assign(**stamp(rule, code, {}).__dict__)


# ------------------------------------------------------------------------ provenance and its checks


def test_a_stamp_names_its_settings_and_code_and_everything_upstream():
    upstream = table("train", "c1")
    base = stamp("energy_profile", "e1", {"a": 1}, [upstream])
    assert base == stamp("energy_profile", "e1", {"a": 1}, [upstream.copy()])
    assert stamp("energy_profile", "e1", {"a": 2}, [upstream]).config_hash != base.config_hash  # own settings
    assert stamp("energy_profile", "e2", {"a": 1}, [upstream]).code_hash != base.code_hash  # own code
    retrained = table("train", "c2")
    assert stamp("energy_profile", "e1", {"a": 1}, [retrained]).code_hash != base.code_hash  # upstream code
    assert stamp("energy_profile", "e1", {"a": 1}, [upstream.assign(config_hash="other")]) != base  # upstream settings
    alone = stamp("train", "t", {"lr": 1}, [upstream], chain_settings=False)
    assert alone.config_hash == stamp("train", "t", {"lr": 1}).config_hash  # what a reader can recompute


def test_rows_one_rule_made_with_two_codes_are_refused(tmp_path):
    """The fault: an energy table mixing rows of the new code with rows of the old, all stamped alike."""
    old, new = table("energy_profile", "aaaa"), table("energy_profile", "bbbb")
    paths = [tmp_path / "0.parquet", tmp_path / "1.parquet"]
    for frame, path in zip((old, new), paths, strict=True):
        frame.to_parquet(path)
    with pytest.raises(InputMismatch, match=r"mixes rows that rule energy_profile made with different code .*aaaa, "
                                             r"bbbb.*snakemake --forcerun energy_profile"):  # fmt: skip
        read_tables(paths)
    # rows of two rules (trained runs, pretrained models) each with its own code are one table
    read_tables([paths[0], write(tmp_path / "2.parquet", table("pretrained_profile", "cccc"))])


def write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_parquet(path)
    return path


def test_a_table_without_provenance_is_neither_read_nor_written(tmp_path):
    path = write(tmp_path / "old.parquet", pd.DataFrame({"x": [1]}))
    with pytest.raises(InputMismatch, match=r"old.parquet has no config_hash, code_hash, made_by column"):
        read_table(path)
    with pytest.raises(ValueError, match="no provenance columns"):
        write_table(pd.DataFrame({"x": [1]}), tmp_path / "new.parquet")


def test_a_reader_refuses_another_jobs_table_naming_the_file_and_the_difference(tmp_path):
    frame = table("train", "c", seed=[1, 1], step=[0, 5])
    with pytest.raises(InputMismatch, match=r"snap.parquet holds seed 1 where this job expects 0"):
        check_keys(frame, "snap.parquet", seed=[0])
    with pytest.raises(InputMismatch, match=r"holds step 0, 5 where this job expects 0, 5, 12"):
        check_keys(frame, "snap.parquet", step=(0, 5, 12))
    check_keys(frame, "snap.parquet", seed=[1], step=(0, 5))


def test_a_replaced_or_cut_image_array_is_refused(tmp_path):
    config = validate_config(TINY)
    dataset = prepare_dataset(config["datasets"]["tiny"])
    images, manifest = tmp_path / "images.npy", tmp_path / "manifest.parquet"
    save_dataset(dataset, images, manifest, name="tiny", mark=Stamp("s", "c", "prepare_dataset"))
    assert load_dataset(images, manifest, name="tiny").images.shape == dataset.images.shape
    with pytest.raises(InputMismatch, match=r"manifest.parquet is of dataset tiny, where this job expects other"):
        load_dataset(images, manifest, name="other")
    np.save(images, dataset.images[:-1])  # cut short
    with pytest.raises(InputMismatch, match=r"images.npy is not the array .*manifest.parquet describes \(shape"):
        load_dataset(images, manifest, mmap=True)
    np.save(images, 255 - dataset.images)  # same shape, other pixels
    with pytest.raises(InputMismatch, match=r"fingerprint [0-9a-f]+ where the manifest says"):
        load_dataset(images, manifest)


# ------------------------------------------------------------------------ settings that change no result


def test_the_non_result_settings_are_the_ones_the_schema_marks():
    """One list, read from the schema: every setting whose description says it does not change results."""
    from firstlayer.config import load_schema

    said = {(section, key) for section, entry in load_schema()["properties"].items()
            for key, value in entry.get("properties", {}).items()
            if "does not change results" in value.get("description", "").lower()}  # fmt: skip
    marked = {(section, key) for section, keys in non_result_settings().items() for key in keys}
    assert marked == said == {("training", "checkpoint_minutes"), ("training", "log_every")}


def test_non_result_settings_give_byte_identical_tables(tmp_path):
    """Each job of a tiny grid (two linear seeds in one process, a ReLU CNN on random labels) trained with the
    defaults, with a progress line every step, and saving its progress at every step: the same bytes."""
    config = validate_config(TINY)
    dataset = prepare_dataset(config["datasets"]["tiny"])
    normalisation = channel_stats(dataset.split("train")[0])
    mark = Stamp("settings", "code", "train")
    variants = {"defaults": {}, "log every step": {"log_every": 1}, "save every step": {"checkpoint_minutes": 1e-9}}
    for arch, labels, seeds in (("lin", "true", [0, 1]), ("cnn", "random", [0])):
        job = {"dataset": "tiny", "arch": arch, "labels": labels, "seeds": seeds,
               "architecture": config["architectures"][arch], "snapshots": config["snapshots"],
               "training": result_settings("training", config["training"]),
               "data": config["datasets"]["tiny"]}  # fmt: skip
        written = {}
        for name, progress in variants.items():
            lines = []
            results = run_job(job, dataset, normalisation, log=lines.append, checkpoint=tmp_path / f"{arch}{name}.pt",
                              **progress)  # fmt: skip
            if name == "save every step":
                assert sum("checkpoint saved" in line for line in lines) >= 11, lines  # at every step
            for kind, frame in zip(("snapshots", "metrics"), job_tables(job, results), strict=True):
                path = tmp_path / f"{arch}-{name}-{kind}.parquet"
                write_table(frame, path, mark)
                written.setdefault(kind, []).append(path.read_bytes())
        for kind, blobs in written.items():
            assert all(blob == blobs[0] for blob in blobs), f"{arch} {kind} differ"


def test_sigint_stops_training_as_sigterm_does():
    """Ctrl-C in Snakemake's terminal sends SIGINT to the job too: it saves and exits (75) instead of losing its
    progress to a KeyboardInterrupt."""
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert stop.requested and stop.signal == signal.SIGINT


# ------------------------------------------------------------------------ through Snakemake


@pytest.fixture(scope="module")
def rule_scripts() -> dict[str, str]:
    """rule -> the file name of the script it runs."""
    return {rule.name: Path(rule.script).name for rule in workflow_rules() if rule.script}


@pytest.fixture(scope="module")
def script_imports() -> dict[str, set[str]]:
    return measured_imports(sorted(SCRIPTS.glob("*.py")))


def rule_graph(clone: Path) -> dict[str, set[str]]:
    """rule -> the rules that consume its outputs, from `snakemake --rulegraph` of the run in `clone`."""
    proc = snakemake(clone, "--rulegraph", configfile=clone / "tiny.yaml", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', proc.stdout, flags=re.M))
    graph: dict[str, set[str]] = {name: set() for name in names.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, flags=re.M):
        graph[names[a]].add(names[b])
    return graph


def downstream(rules: set[str], graph: dict[str, set[str]]) -> set[str]:
    """`rules` and every rule that consumes their outputs, directly or not."""
    found, pending = set(), list(rules)
    while pending:
        rule = pending.pop()
        if rule not in found:
            found.add(rule)
            pending.extend(graph.get(rule, ()))
    return found


#: One module per stage of the pipeline.
STAGE_MODULES = ("datasets", "patches", "train", "energy", "theory", "analysis", "replication", "plots")


@pytest.fixture(scope="module")
def clone_run(tmp_path_factory) -> Path:
    """A copy of this checkout that has run the tiny grid to the end (its package is edited, and restored, by the
    tests below: the finished run and the package stay one)."""
    clone = checkout(tmp_path_factory.mktemp("edits") / "clone")
    (clone / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    proc = snakemake(clone, configfile=clone / "tiny.yaml", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return clone


def dry_run_with_edit(clone: Path, module: str, edit) -> subprocess.CompletedProcess:
    """The jobs a dry run of the finished clone plans once `edit` (text -> text) is applied to one of its modules."""
    source = clone / "workflow" / "firstlayer" / f"{module}.py"
    text = source.read_text()
    source.write_text(edit(text))
    try:
        return snakemake(clone, "--dry-run", configfile=clone / "tiny.yaml", snakefile=clone / "Snakefile")
    finally:
        source.write_text(text)


@pytest.mark.e2e
@pytest.mark.parametrize("module", STAGE_MODULES)
def test_editing_one_module_plans_the_jobs_whose_code_it_is_and_what_follows(
    module, clone_run, rule_scripts, script_imports
):
    """One statement added to one module: the dry run plans the rules whose scripts import it (measured in a fresh
    interpreter, sys.modules) and everything downstream of them; nothing else. The closure read from the source may
    hold more (imports inside functions): the plan may too, but only that."""
    proc = dry_run_with_edit(clone_run, module, lambda text: text + "\n_EDITED_BY_A_TEST = 1\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {rule for rule, _ in planned_jobs(proc.stdout)} - {"all"}
    graph = rule_graph(clone_run)
    in_run = {rule: script for rule, script in rule_scripts.items() if rule in graph}
    name = f"firstlayer.{module}"
    measured = {rule for rule, script in in_run.items() if name in script_imports[script]}
    static = {rule for rule, script in in_run.items() if name in import_closure(SCRIPTS / script)}
    assert measured, f"no rule of the run imports {name}"
    least = downstream(measured, graph) - {"all"}
    if "prepare_dataset" in planned:  # a checkpoint: its shards are listed once it has run, not in a dry run
        least.discard("patch_shard")
    assert least <= planned <= downstream(static, graph) - {"all"}, (
        sorted(planned),
        sorted(measured),
    )
    if module == "energy":  # the profiles and what follows them; no training, no patch statistics
        assert not planned & {"prepare_dataset", "dataset_normalisation", "patch_shard", "patch_pca", "train"}
        assert {"energy_profile", "collect_energy", "fit_formula", "consistency", "replication"} <= planned


@pytest.mark.e2e
def test_a_comment_or_docstring_edit_plans_nothing(clone_run):
    def edit(text: str) -> str:
        text = text.replace('"""Energy profiles:', '"""Energy profiles (edited):', 1)
        return text.replace("\nKINDS = ", "\n# a comment\nKINDS = ", 1)

    proc = dry_run_with_edit(clone_run, "energy", edit)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]


@pytest.mark.e2e
def test_every_table_and_intermediate_carries_its_provenance(smoke_run):
    paths = sorted((smoke_run / "results").rglob("*.parquet"))
    tables = [p for p in paths if p.parent.name == "tables"]
    assert len(tables) >= 18 and len(paths) > len(tables)
    for path in paths:
        frame = pd.read_parquet(path)
        missing = [column for column in PROVENANCE if column not in frame]
        assert not missing, f"{path.relative_to(smoke_run)} lacks {missing}"
        assert frame.empty or frame[list(PROVENANCE)].notna().all().all(), path
        read_table(path)  # one code per rule
    fits, energy = (pd.read_parquet(smoke_run / "results" / "tables" / f"{n}.parquet") for n in ("fits", "energy"))
    assert set(fits["made_by"]) == {"fit_formula"} and set(energy["made_by"]) == {"energy_profile"}
    assert fits["config_hash"].nunique() == 1 and not set(fits["config_hash"]) & set(energy["config_hash"])


def copy_run(smoke_run: Path, where: Path) -> Path:
    """A copy of the finished smoke run (results and Snakemake's records), to change without touching it."""
    shutil.copytree(smoke_run, where, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return where


def edited_config(where: Path, edit) -> Path:
    config = yaml.safe_load(SMOKE.read_text())
    edit(config)
    path = where / "edited.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.e2e
def test_a_fit_setting_changes_the_fits_hash_and_not_the_energy_hash(smoke_run, tmp_path):
    run = copy_run(smoke_run, tmp_path / "run")
    config = edited_config(tmp_path, lambda c: c.setdefault("fit", {}).update(points_per_decade=11))
    before = {n: pd.read_parquet(run / "results" / "tables" / f"{n}.parquet") for n in ("energy", "fits")}
    proc = snakemake(run, "results/tables/fits.parquet", configfile=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = {n: pd.read_parquet(run / "results" / "tables" / f"{n}.parquet") for n in ("energy", "fits")}
    assert "rule fit_formula" in proc.stdout + proc.stderr and "rule energy_profile" not in proc.stdout + proc.stderr
    pd.testing.assert_series_equal(before["energy"]["config_hash"], after["energy"]["config_hash"])
    assert set(before["fits"]["config_hash"]).isdisjoint(after["fits"]["config_hash"])
    assert set(before["fits"]["code_hash"]) == set(after["fits"]["code_hash"])  # same code, other settings


@pytest.mark.e2e
@pytest.mark.parametrize("fault", ["another seed's", "last snapshot dropped"])
def test_wrong_snapshots_stop_the_energy_job_naming_the_file(fault, smoke_run, tmp_path):
    """The fault: a run's snapshots replaced by another seed's, or cut short, were profiled with rc 0 (seed 0
    missing and seed 1 doubled, or a 'final' profile at an early step)."""
    run = copy_run(smoke_run, tmp_path / "run")
    folder = run / "results" / "train" / "rotations" / "small_cnn" / "true"
    target = folder / "seed0" / "snapshots.parquet"
    if fault == "another seed's":
        shutil.copy2(folder / "seed1" / "snapshots.parquet", target)
        expected = r"snapshots.parquet holds seed 1 where this job expects 0"
    else:
        frame = pd.read_parquet(target)
        frame[frame.step < frame.step.max()].to_parquet(target, index=False)
        expected = r"snapshots.parquet holds step 0, 1, 3, 7 where this job expects 0, 1, 3, 7, 20"
    os.utime(target)  # newer than the energy table: Snakemake reruns the profile
    proc = snakemake(run, "results/energy/rotations/small_cnn/true/seed0.parquet")
    assert proc.returncode != 0
    log = (run / "results" / "logs" / "energy_profile" / "rotations" / "small_cnn" / "true" / "seed0.log").read_text()
    assert re.search(r"InputMismatch: results/train/rotations/small_cnn/true/seed0/" + expected, log), log[-2000:]
    assert not (run / "results" / "energy" / "rotations" / "small_cnn" / "true" / "seed0.parquet").exists()


@pytest.mark.e2e
def test_non_result_settings_rerun_no_job(smoke_run, tmp_path):
    """Only the configuration page, which shows the config, is made again."""
    config = edited_config(tmp_path, lambda c: c["training"].update(log_every=3, checkpoint_minutes=0.5))
    proc = snakemake(smoke_run, "--dry-run", configfile=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {rule for rule, _ in planned_jobs(proc.stdout)} == {"report_configuration", "all"}


LONG = {
    "datasets": {"photos": {"source": "embedded", "labels": "photo", "photos": ["astronaut", "coffee", "rocket"],
                            "train_per_class": 16, "test_per_class": 4}},
    "architectures": {"cnn": {"model": "small_cnn", "kernel_size": 3, "width": 8, "lr": 0.01, "batch_size": 16,
                              "steps": 3000}},
    "grid": [{"datasets": ["photos"], "architectures": ["cnn"], "labels": ["true"], "seeds": [0]}],
    "snapshots": {"count": 3},
    "training": {"device": "cpu", "eval_points": 2, "train_eval_size": 16, "log_every": 100,
                 "checkpoint_minutes": 0},
    "theory": {"patches": 500, "steps": 10},
}  # fmt: skip


@pytest.mark.e2e
def test_ctrl_c_then_the_same_command_again_finishes_from_the_checkpoint(tmp_path):
    """The README's recovery, as written: Ctrl-C (SIGINT to Snakemake and its jobs) during training, then the same
    command again. The job saves its progress on SIGINT, and the second run resumes from it and finishes."""
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(LONG))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(config), "--cores", "2"]  # fmt: skip
    log = tmp_path / "results" / "logs" / "train" / "photos" / "cnn" / "true" / "seed0.log"
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not (log.exists() and "step 200/3000" in log.read_text()):
        assert time.monotonic() < deadline and first.poll() is None, "training did not start"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert first.wait(timeout=300) != 0
    stopped = log.read_text()
    assert re.search(r"training stopped by SIGINT after step \d+; progress saved to .*seed0.resume.pt", stopped)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"resuming from checkpoint .*seed0.resume.pt after step \d+", log.read_text())
    assert (tmp_path / "results" / "tables" / "replication.md").exists()
    assert not list((tmp_path / "results" / "train").rglob("*.resume.pt"))


@pytest.mark.e2e
def test_the_same_config_twice_from_scratch_gives_identical_tables(smoke_run, tmp_path):
    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = sorted(p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*.parquet"))
    assert ours == sorted(p.relative_to(smoke_run) for p in (smoke_run / "results").rglob("*.parquet"))
    for path in ours:
        a, b = pd.read_parquet(smoke_run / path), pd.read_parquet(tmp_path / path)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=str(path))
