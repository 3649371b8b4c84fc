"""The one small I/O module: prepared datasets on disk, Parquet with provenance columns."""

from __future__ import annotations

import contextlib
import platform
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from firstlayer.datasets import PreparedDataset


def _version(package: str) -> str:
    """Installed version of a distribution ('unknown' when it is not installed, e.g. a plain checkout)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance(config_hash: str) -> dict[str, str]:
    """Provenance columns added to every table: the hash of the settings that made it, and software versions."""
    return {
        "config_hash": config_hash,
        "firstlayer_version": _version("firstlayer"),
        "torch_version": _version("torch"),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }


def write_table(frame: pd.DataFrame, path: str | Path, config_hash: str | None = None) -> None:
    """Write a tidy table to Parquet, adding provenance columns unless the frame carries them already."""
    frame = frame.copy()
    if config_hash is not None:
        for key, value in provenance(config_hash).items():
            frame[key] = value
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def read_tables(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate Parquet tables; tables of no rows (e.g. a pretrained model without checkpoint) add nothing."""
    tables = [pd.read_parquet(p) for p in paths]
    return pd.concat([t for t in tables if len(t)] or tables[:1], ignore_index=True)


def save_dataset(dataset: PreparedDataset, images_path: str | Path, manifest_path: str | Path) -> None:
    """Images as one (N, 3, H, W) uint8 .npy array, manifest as Parquet (one row per image, same order)."""
    Path(images_path).parent.mkdir(parents=True, exist_ok=True)
    np.save(images_path, np.ascontiguousarray(dataset.images, dtype=np.uint8))
    manifest = dataset.manifest.copy()
    if dataset.class_names is not None:  # kept in the Parquet metadata: a subset may lack some classes
        manifest.attrs["class_names"] = list(dataset.class_names)
    manifest.to_parquet(manifest_path, index=False)


def load_dataset(images_path: str | Path, manifest_path: str | Path, *, mmap: bool = False) -> PreparedDataset:
    """Inverse of save_dataset; ``mmap=True`` maps the images read-only instead of reading them (for jobs that
    use a slice of a large dataset)."""
    images = np.load(images_path, mmap_mode="r" if mmap else None)
    manifest = pd.read_parquet(manifest_path)
    if len(manifest) != images.shape[0]:
        raise ValueError(f"{manifest_path} has {len(manifest)} rows for {images.shape[0]} images in {images_path}")
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
