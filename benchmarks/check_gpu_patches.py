"""GPU check of the exact patch statistics: ``raw_moments`` on CUDA equals the CPU result bit for bit (both are
exact integer sums), and its time on 50,000 stand-in images. Run by hand on a machine with a GPU:
python benchmarks/check_gpu_patches.py [--images 50000]"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_patches import stand_in

from firstlayer.patches import raw_moments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50_000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU available")
        return
    images = torch.from_numpy(stand_in(args.images))
    print(f"{torch.cuda.get_device_name()}, {args.images} images")
    for k in (3, 7):
        cpu, _ = raw_moments(images, k)
        raw_moments(images[:2048], k, device="cuda", images_per_chunk=1024)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        gpu, _ = raw_moments(images, k, device="cuda", images_per_chunk=1024)
        seconds = time.perf_counter() - t0
        same = (
            all(np.array_equal(getattr(cpu, f), getattr(gpu, f)) for f in ("total", "outer")) and cpu.count == gpu.count
        )
        print(f"{k}x{k}: GPU {seconds:.3f} s (host-to-device copy included); bit-identical to CPU: {same}")


if __name__ == "__main__":
    main()
