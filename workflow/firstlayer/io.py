"""The one small I/O module: prepared datasets on disk, Parquet with provenance columns."""

from __future__ import annotations

import contextlib
import hashlib
import platform
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from firstlayer.codehash import config_hash
from firstlayer.datasets import PreparedDataset


def _version(package: str) -> str:
    """Installed version of a distribution ('unknown' when it is not installed, e.g. a plain checkout)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


#: Columns every table carries: what made it (settings hash, code hash, the rule) and the software versions.
PROVENANCE = ("config_hash", "code_hash", "made_by", "firstlayer_version", "torch_version", "numpy_version",
              "python_version")  # fmt: skip


class InputMismatch(ValueError):
    """An input that is not what its job expects (another run's, truncated, stale, or mixed from two code
    versions); the message names the file and what differs."""


@dataclass(frozen=True)
class Stamp:
    """The provenance of a job's tables: the hash of the settings that made them, of the code, and the rule."""

    config_hash: str
    code_hash: str
    made_by: str


def _hashes(frames: Iterable[pd.DataFrame], column: str) -> list[str]:
    return sorted({str(h) for f in frames if column in f for h in f[column].unique()})


def stamp(made_by: str, code: str, settings: Any, inputs: Iterable[pd.DataFrame] = (), *,
          chain_settings: bool = True) -> Stamp:  # fmt: skip
    """The stamp of a job's tables. Its code hash covers the job's code (`code`, codehash.code_hash of its script)
    and its inputs' code hashes; its settings hash covers `settings` and, with `chain_settings`, its inputs'
    settings hashes: so each names everything upstream. A job whose settings already hold all that determines its
    inputs (a training run holds its dataset's spec) hashes its settings alone, which its readers can recompute."""
    inputs = list(inputs)
    upstream = _hashes(inputs, "config_hash") if chain_settings else []
    settings_hash = config_hash({"settings": settings, "inputs": upstream}) if upstream else config_hash(settings)
    codes = _hashes(inputs, "code_hash")
    return Stamp(settings_hash, config_hash({"code": code, "inputs": codes}) if codes else code, made_by)


def provenance(mark: Stamp) -> dict[str, str]:
    """Provenance columns added to every table: what made it and the software versions."""
    return {
        "config_hash": mark.config_hash,
        "code_hash": mark.code_hash,
        "made_by": mark.made_by,
        "firstlayer_version": _version("firstlayer"),
        "torch_version": _version("torch"),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }


def write_table(frame: pd.DataFrame, path: str | Path, mark: Stamp | None = None) -> None:
    """Write a tidy table to Parquet with `mark`'s provenance columns; without one the frame must carry them
    already (a collected table keeps its rows' provenance)."""
    frame = frame.copy()
    if mark is not None:
        for key, value in provenance(mark).items():
            frame[key] = value
    elif missing := [c for c in PROVENANCE if c not in frame]:
        raise ValueError(f"table for {path} has no provenance columns {missing}: give write_table a Stamp")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def check_uniform(frame: pd.DataFrame, where: str | Path) -> pd.DataFrame:
    """`frame` unchanged when each rule that made rows of it did so with one code: rows of one rule from two
    versions of the code are a mixed table, which no job may read (or write)."""
    if len(frame) == 0:
        return frame
    if missing := [c for c in ("config_hash", "code_hash", "made_by") if c not in frame]:
        raise InputMismatch(f"{where} has no {', '.join(missing)} column: written by another version of firstlayer; "
                            "delete it and run again")  # fmt: skip
    codes = frame.groupby("made_by")["code_hash"].unique()
    for rule, hashes in codes[codes.map(len) > 1].items():
        raise InputMismatch(f"{where} mixes rows that rule {rule} made with different code (code hashes "
                            f"{', '.join(sorted(hashes))}): some are stale; rerun with "
                            f"`snakemake --forcerun {rule}` to remake them all")  # fmt: skip
    return frame


def check_keys(frame: pd.DataFrame, where: str | Path, **expected: Any) -> pd.DataFrame:
    """`frame` unchanged when it is what its reader expects: each `expected` column holds only that value (a
    list, tuple or set: exactly those values); else InputMismatch naming the file, the column and both values."""
    for column, value in expected.items():
        if column not in frame:
            raise InputMismatch(f"{where} has no {column!r} column (expected {value!r})")
        found = sorted(frame[column].unique().tolist(), key=_order)
        want = sorted(value, key=_order) if isinstance(value, list | tuple | set | frozenset) else [value]
        if len(frame) == 0 or [str(v) for v in found] != [str(v) for v in want]:
            raise InputMismatch(f"{where} holds {column} {_listed(found)} where this job expects {_listed(want)}: "
                                "it belongs to another job, or is stale; delete it and run again")  # fmt: skip
    return frame


def _order(value: Any) -> tuple:
    """Numbers in numeric order, then text."""
    return (0, value, "") if isinstance(value, int | float | np.number) else (1, 0, str(value))


def _listed(values: list) -> str:
    return ", ".join(map(str, values)) if values else "nothing"


def read_table(path: str | Path, **expected: Any) -> pd.DataFrame:
    """A table that a job reads, checked: made by one code per rule, and holding the `expected` keys."""
    return check_keys(check_uniform(pd.read_parquet(path), path), path, **expected)


def read_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate Parquet tables (tables of no rows, e.g. a pretrained model without checkpoint, add nothing),
    refusing a set that mixes rows one rule made with different code."""
    paths = list(paths)
    tables = [pd.read_parquet(p) for p in paths]
    frame = pd.concat([t for t in tables if len(t)] or tables[:1], ignore_index=True)
    return check_uniform(frame, paths[0] if len(paths) == 1 else f"the {len(paths)} tables {paths[0]}, ...")


def pca_basis(pca: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A tidy PCA table (patches.pca_frame) -> eigenvalues (d,) and eigenvectors (d, d) as columns, ordered by
    component; here, not in patches, so that its readers need no torch."""
    pca = pca.sort_values("component")
    return pca["eigenvalue"].to_numpy(np.float64), np.stack(pca["eigenvector"].to_numpy()).T.astype(np.float64)


#: Images a prepared array's fingerprint reads: evenly spaced, so that it costs the same for any dataset.
FINGERPRINT_IMAGES = 64


def images_fingerprint(images: np.ndarray) -> str:
    """What a prepared image array is, cheaply: a hash of its shape, dtype and `FINGERPRINT_IMAGES` evenly spaced
    images (another dataset, a truncated or a rewritten array gives another)."""
    h = hashlib.sha256(f"{images.dtype}{tuple(images.shape)}".encode())
    for i in np.unique(np.linspace(0, len(images) - 1, num=min(len(images), FINGERPRINT_IMAGES)).astype(int)):
        h.update(np.ascontiguousarray(images[i]).tobytes())
    return h.hexdigest()[:16]


def save_dataset(dataset: PreparedDataset, images_path: str | Path, manifest_path: str | Path, *, name: str = "",
                 mark: Stamp | None = None) -> None:  # fmt: skip
    """Images as one (N, 3, H, W) uint8 .npy array, manifest as Parquet (one row per image, same order). An array
    carries no header: the manifest states what it is (dataset `name`, shape, fingerprint) and, with `mark`, its
    provenance."""
    Path(images_path).parent.mkdir(parents=True, exist_ok=True)
    images = np.ascontiguousarray(dataset.images, dtype=np.uint8)
    np.save(images_path, images)
    manifest = dataset.manifest.copy()
    if mark is not None:
        manifest = manifest.assign(**provenance(mark))
    if dataset.class_names is not None:  # kept in the Parquet metadata: a subset may lack some classes
        manifest.attrs["class_names"] = list(dataset.class_names)
    manifest.attrs["images"] = {"dataset": name, "shape": list(images.shape), "fingerprint": images_fingerprint(images)}
    manifest.to_parquet(manifest_path, index=False)


def load_dataset(images_path: str | Path, manifest_path: str | Path, *, mmap: bool = False,
                 name: str | None = None) -> PreparedDataset:  # fmt: skip
    """Inverse of save_dataset, checked: the array is the one its manifest describes (of dataset `name` when
    given); ``mmap=True`` maps the images read-only instead of reading them (for jobs that use a slice of a large
    dataset)."""
    images = np.load(images_path, mmap_mode="r" if mmap else None)
    manifest = pd.read_parquet(manifest_path)
    stated = manifest.attrs.get("images")
    if stated is None:
        raise InputMismatch(f"{manifest_path} does not say what {images_path} is: written by another version of "
                            "firstlayer; delete both and run again")  # fmt: skip
    if name is not None and stated["dataset"] != name:
        raise InputMismatch(f"{manifest_path} is of dataset {stated['dataset']}, where this job expects {name}: "
                            "delete it and its images and run again")  # fmt: skip
    found = {"shape": list(images.shape), "fingerprint": images_fingerprint(images)}
    if differs := [k for k in found if found[k] != stated[k]]:
        detail = "; ".join(f"{k} {found[k]} where the manifest says {stated[k]}" for k in differs)
        raise InputMismatch(f"{images_path} is not the array {manifest_path} describes ({detail}): one of them was "
                            "replaced or cut short; delete both and run again")  # fmt: skip
    if len(manifest) != images.shape[0]:
        raise InputMismatch(f"{manifest_path} has {len(manifest)} rows for {images.shape[0]} images in {images_path}")
    names = manifest.attrs.get("class_names")
    return PreparedDataset(images=images, manifest=manifest, class_names=tuple(names) if names else None)


@contextlib.contextmanager
def job_log(path: str | Path) -> Iterator[None]:
    """Send a job's stdout and stderr (progress lines, warnings, tracebacks) to its log file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            yield
        except BaseException:
            traceback.print_exc()
            raise


def console_log(prefix: str) -> Callable[[str], None]:
    """A job's log function: each line to the job's log (stdout, under ``job_log``) and, prefixed by `prefix`, to
    the console Snakemake runs in (the process's original stderr), so that a long job can be watched there."""

    def log(message: str) -> None:
        print(message, flush=True)
        if sys.__stderr__ is not None:
            print(f"[{prefix}] {message}", file=sys.__stderr__, flush=True)

    return log
