"""Patch moments of large images: time and peak memory of ``raw_moments`` at ImageNet sizes, on the CPU.

Prints, for random uint8 images (one process, each measurement's peak resident memory reset before it):

- 20,000 images at 32 px, k = 3: the small-image reference for the cost per patch;
- 1,000 images at 224 px for k = 7 (ResNet-18's first layer) and k = 16 (ViT-B/16's patch embedding): time,
  peak extra memory, time per patch and per patch and d^2 (d = 3k^2, the entries of the outer product) against
  the k = 3 case;
- the 48-image ViT-B/16 case (k = 16, 224 px) against the implementation before bounded memory (commit e7f5c2e,
  read with ``git show`` into a temporary module), with a check that both give the same moments bit for bit.

Times are the best of --repeats runs (the old implementation runs once), peaks the largest.

Run by hand from the repository root: python benchmarks/patch_memory.py [--images 1000] [--threads 2] [--skip-old]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from firstlayer.patches import raw_moments

OLD_COMMIT = "e7f5c2e"


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS (VmHWM) of this process; False where /proc/self/clear_refs does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, seconds, peak resident memory above the start in MiB): VmHWM after a reset, else sampled every 5 ms."""
    gc.collect()
    before = _status_mib("VmRSS")
    exact, peak, done = _reset_peak(), [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _status_mib("VmRSS"))
            time.sleep(0.005)

    sampler = None if exact else threading.Thread(target=sample, daemon=True)
    if sampler is not None:
        sampler.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    if sampler is not None:
        sampler.join()
    top = _status_mib("VmHWM") if exact else max(peak[0], _status_mib("VmRSS"))
    return result, seconds, top - before


def best(fn: Callable[[], object], repeats: int) -> tuple[object, float, float]:
    """measure() `repeats` times: (last result, least seconds, largest peak MiB)."""
    runs = [measure(fn) for _ in range(repeats)]
    return runs[-1][0], min(r[1] for r in runs), max(r[2] for r in runs)


def old_module() -> ModuleType:
    """firstlayer/patches.py at OLD_COMMIT, as a module of its own."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:workflow/firstlayer/patches.py"], cwd=root, capture_output=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "patches_e7f5c2e.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images per 224 px case")
    parser.add_argument("--small-images", type=int, default=20000, help="images of the 32 px, k = 3 reference")
    parser.add_argument("--vit-images", type=int, default=48, help="images of the ViT-B/16 case, old against new")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-old", action="store_true", help="leave out the old implementation (~9 GiB, ~1 min)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw_moments(images(4, 32), 3)  # first-call setup out of the measurements

    print(f"raw_moments on {args.threads} threads, random uint8 images")
    print(f"{'case':>26} {'time':>9} {'peak':>11} {'ns/patch':>10} {'vs k=3':>7} {'ps/(patch d^2)':>15} {'vs k=3':>7}")
    base = None
    for n, size, k in ((args.small_images, 32, 3), (args.images, 224, 7), (args.images, 224, 16)):
        x = images(n, size)
        seconds, peak = best(lambda x=x, k=k: raw_moments(x, k), args.repeats)[1:]
        patches = n * (size - k + 1) ** 2
        per_patch = seconds / patches * 1e9
        per_entry = per_patch * 1e3 / (3 * k * k) ** 2
        base = base or (per_patch, per_entry)
        print(
            f"{f'{n} x {size} px, k = {k}':>26} {seconds:8.2f}s {peak:8.0f} MiB {per_patch:10.1f} "
            f"{per_patch / base[0]:6.1f}x {per_entry:15.2f} {per_entry / base[1]:6.2f}x"
        )
        del x
        gc.collect()

    x = images(args.vit_images, 224, seed=1)
    new, seconds, peak = best(lambda: raw_moments(x, 16), args.repeats)
    print(f"\nViT-B/16 case, {args.vit_images} images at 224 px, k = 16:")
    print(f"  new: {seconds:7.2f} s, peak +{peak:,.0f} MiB")
    if args.skip_old:
        return
    old, old_seconds, old_peak = measure(lambda: old_module().raw_moments(x, 16))
    same = all(
        a.count == b.count and np.array_equal(a.total, b.total) and np.array_equal(a.outer, b.outer)
        for a, b in zip(new, old, strict=True)
    )
    print(f"  old ({OLD_COMMIT}): {old_seconds:7.2f} s, peak +{old_peak:,.0f} MiB")
    print(f"  {old_seconds / seconds:.1f}x faster, {old_peak / peak:.1f}x less memory; moments bit-identical: {same}")


if __name__ == "__main__":
    main()
