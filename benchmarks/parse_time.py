"""Parse time: `snakemake -n` (a dry run: parsing the Snakefile, validating the config and planning the jobs) of a
grid of three torchvision models (resnet18, resnet50, convnext_tiny) against the default config.yaml. Validating a
user model builds it and trains it one step; the workflow caches the checks that passed under
.snakemake/firstlayer/model_checks, so only the first parse of a working directory pays for them (the cold run,
reported apart), and every later one (each SLURM job parses the Snakefile again) reads them back.

Runs in temporary working directories (--directory): no results/ or .snakemake/ of the repository is touched.
Run by hand: python benchmarks/parse_time.py [--repeats 5]"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: The torchvision models of the grid, each an architecture `model: torchvision:NAME`.
TORCHVISION = ("resnet18", "resnet50", "convnext_tiny")


def torchvision_config() -> dict:
    """config.yaml with its architectures and grid replaced by the three torchvision models on its photos."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["architectures"] = {
        name: {"model": f"torchvision:{name}", "lr": 0.01, "batch_size": 32, "steps": 40, "eval_points": 1}
        for name in TORCHVISION
    }
    config["grid"] = [{"datasets": ["photos"], "architectures": list(TORCHVISION), "labels": ["true"], "seeds": [0]}]
    return config


def dry_run_seconds(configfile: Path, workdir: Path) -> float:
    """Wall seconds of one `snakemake -n --cores 1` of `configfile` in `workdir`; exits on a failed run."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(configfile)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"dry run of {configfile} failed:\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed dry runs per config (after one cold run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="firstlayer-parse-") as tmp:
        grid = Path(tmp) / "torchvision.yaml"
        grid.write_text(yaml.safe_dump(torchvision_config(), sort_keys=False))
        medians = {}
        for label, configfile in (("default config.yaml", REPO / "config.yaml"), ("torchvision grid", grid)):
            workdir = Path(tmp) / label.split()[0]
            workdir.mkdir()
            cold = dry_run_seconds(configfile, workdir)
            times = [dry_run_seconds(configfile, workdir) for _ in range(args.repeats)]
            medians[label] = statistics.median(times)
            listed = ", ".join(f"{t:.2f}" for t in times)
            print(f"{label:20s} cold {cold:6.2f} s; median {medians[label]:6.2f} s of {args.repeats} ({listed})")
    gap = medians["torchvision grid"] - medians["default config.yaml"]
    print(f"torchvision grid - default: {gap:+.2f} s (target: within 1.5 s)")


if __name__ == "__main__":
    main()
