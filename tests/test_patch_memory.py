"""raw_moments in bounded memory: peak RSS that does not grow with the number of images, and exact moments for
large kernels and images, in bands of rows, against float64 unfolding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import firstlayer
from firstlayer import patches
from firstlayer.patches import PIXEL_OFFSET, PatchMoments, raw_moments, unfold_patches

# A fresh interpreter: imports, then the images; then the peak-RSS mark is reset to the current RSS (Linux:
# /proc/self/clear_refs), so that the import's own peak does not count; the peak (VmHWM) after one raw_moments call,
# above the RSS at the reset, is the memory the call needed (tracemalloc does not see torch's buffers).
CHILD = """
import json, sys
import torch
from firstlayer.patches import raw_moments


def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


n, size, k = (int(a) for a in sys.argv[1:])
torch.set_num_threads(2)
images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
baseline = status("VmRSS")
raw_moments(images, k)
print(json.dumps({"extra_mib": (status("VmHWM") - baseline) / 2**20}))
"""

#: 128 px, k = 7: the code before bounded memory needed +531 MiB at 100 images and +630 MiB at 1,000 (its image
#: buffers grew with each chunk of up to 256 images); now +114 MiB at both.
SIZE, K = 128, 7
#: Allowed growth from 100 to 1,000 images: the image tile is capped at BUFFER_BYTES = 16 MiB.
GROWTH_MIB = 16
#: Allowed extra memory at this size: float32 products (64 MiB), the image tile and the float64 pass (16 MiB
#: each), and the small cell sums, with room for allocator slack.
PEAK_MIB = 192


def peak_extra_mib(n: int, size: int, k: int) -> float:
    """Extra peak RSS (MiB) of raw_moments on n random images, measured in a fresh subprocess."""
    package_root = str(Path(firstlayer.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", CHILD, str(n), str(size), str(k)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["extra_mib"]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets and reads the peak RSS in /proc (Linux)")
def test_peak_memory_does_not_grow_with_the_number_of_images():
    small, large = peak_extra_mib(100, SIZE, K), peak_extra_mib(1000, SIZE, K)
    assert abs(large - small) < GROWTH_MIB, f"+{small:.1f} MiB at 100 images, +{large:.1f} MiB at 1,000"
    assert max(small, large) < PEAK_MIB, f"+{small:.1f} MiB at 100 images, +{large:.1f} MiB at 1,000"


def unfold_reference(images: np.ndarray, k: int) -> PatchMoments:
    """Every patch of (pixel - 128) unfolded in float64, then p^T p: exact for integer pixels."""
    p = unfold_patches(torch.from_numpy(images).double() - PIXEL_OFFSET, k)
    return PatchMoments(p.shape[0], p.sum(0).numpy(), (p.T @ p).numpy())


def assert_exact(m: PatchMoments, ref: PatchMoments) -> None:
    assert m.count == ref.count
    np.testing.assert_array_equal(m.total, ref.total)
    np.testing.assert_array_equal(m.outer, ref.outer)


@pytest.mark.parametrize(("n", "h", "w", "chunk"), [(2, 96, 112, 256), (3, 40, 57, 2)])
def test_k16_on_larger_images_is_exactly_the_float64_unfolding(n, h, w, chunk):
    """ViT-B/16's 16x16x3 patches; 96x112 takes the banded path at the default budgets (products > 64 MiB)."""
    images = np.random.default_rng(h).integers(0, 256, size=(n, 3, h, w), dtype=np.uint8)
    patch, pixel = raw_moments(images, 16, images_per_chunk=chunk)
    ref = unfold_reference(images, 16)
    assert patch.dim == 768
    assert_exact(patch, ref)
    assert_exact(pixel, unfold_reference(images, 1))
    np.testing.assert_allclose(patch.covariance(), ref.covariance(), rtol=1e-12, atol=1e-12 * ref.outer.max())


@pytest.mark.parametrize(("product_bytes", "buffer_bytes"), [(1 << 12, 1 << 10), (1 << 16, 1 << 14), (1 << 22, 1)])
@pytest.mark.parametrize(("h", "w", "k"), [(23, 19, 7), (9, 30, 5), (12, 12, 12), (20, 17, 1)])
def test_bands_and_tiles_of_any_size_are_exact(monkeypatch, product_bytes, buffer_bytes, h, w, k):
    """Tiny budgets force one-row tiles, bands of a few rows, window-sum passes of one row, and a smaller last
    chunk reusing the tile: the moments stay exactly the unfolded ones."""
    monkeypatch.setattr(patches, "PRODUCT_BYTES", product_bytes)
    monkeypatch.setattr(patches, "BUFFER_BYTES", buffer_bytes)
    images = np.random.default_rng(h * w + k).integers(0, 256, size=(7, 3, h, w), dtype=np.uint8)
    patch, pixel = raw_moments(images, k, images_per_chunk=3)
    assert_exact(patch, unfold_reference(images, k))
    assert_exact(pixel, unfold_reference(images, 1))
