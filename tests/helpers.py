"""Helpers shared by the tests that run the workflow: Snakemake in a folder, the jobs a dry run plans, a copy of
this checkout, the parsed rules. (tests/ is on pytest's pythonpath: ``from helpers import ...``.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"


def snakemake(
    workdir: Path, *args: str, configfile: Path = SMOKE, snakefile: Path = REPO / "Snakefile", cores: int = 2
) -> subprocess.CompletedProcess:
    """Run Snakemake on `snakefile` in `workdir` with `configfile`; its output is captured."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", str(cores), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def planned_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs, rule = [], None
    for line in output.splitlines():
        if m := re.match(r"^\s*(?:localrule|rule|checkpoint) (\w+):", line):  # group jobs indent their rules
            if rule is not None:
                jobs.append((rule, ""))
            rule = m.group(1)
        elif rule is not None and (m := re.match(r"^\s+wildcards: (.*)$", line)):
            jobs.append((rule, m.group(1)))
            rule = None
    if rule is not None:
        jobs.append((rule, ""))
    return jobs


def checkout(where: Path) -> Path:
    """A copy of this checkout's workflow (what a second clone holds), without results."""
    where.mkdir(parents=True)
    shutil.copy2(REPO / "Snakefile", where / "Snakefile")
    for name in ("workflow", "envs", "profiles"):
        shutil.copytree(
            REPO / name, where / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    return where


def workflow_rules() -> list:
    """Every rule of the parsed workflow (default config): plain, checkpoint and generated (plot_<figure>) rules."""
    from snakemake.api import OutputSettings, ResourceSettings, SnakemakeApi

    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), snakefile=REPO / "Snakefile", workdir=REPO)
        return list(workflow._workflow.rules)


# In a child process per script (forked after the heavy libraries are imported once): run the script's top-level
# import statements only (the rest reads `snakemake`) and list the firstlayer modules that end up in sys.modules.
MEASURE = """
import ast, json, os, sys
import numpy, pandas, torch, torchvision, matplotlib, seaborn, scipy, sklearn, skimage  # noqa: F401
result = {}
for path in sys.argv[1:]:
    read, write = os.pipe()
    if os.fork() == 0:
        try:
            tree = ast.parse(open(path).read())
            imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            exec(compile(ast.Module(imports, []), path, "exec"), {"__name__": "__script__"})
            os.write(write, json.dumps(sorted(m for m in sys.modules if m.startswith("firstlayer"))).encode())
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.wait()
    result[path] = json.loads(b"".join(chunks))
print(json.dumps(result))
"""


def measured_imports(scripts: list[Path]) -> dict[str, set[str]]:
    """Per workflow script (by file name), the firstlayer modules its imports load, measured in a fresh interpreter
    on this checkout's package: what the import closure read from the source must cover."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO / "workflow"), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr
    return {Path(path).name: set(modules) for path, modules in json.loads(proc.stdout).items()}
