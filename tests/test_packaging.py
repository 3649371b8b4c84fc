"""pyproject.toml and the conda env of the rules name the same packages with the same version ranges."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
#: conda-forge names of the PyPI packages whose names differ there.
CONDA_NAMES = {"torch": "pytorch"}


def pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {CONDA_NAMES.get(r.name, r.name): r.specifier for r in reqs}


def conda_requirements(path: Path) -> dict[str, SpecifierSet]:
    out = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        assert isinstance(dep, str), f"{path.name}: nested entries (e.g. pip:) are not expected: {dep}"
        name, _, spec = dep.partition(" ")
        out[name] = SpecifierSet(spec.replace(" ", ""))
    return out


def test_every_env_file_matches_pyproject() -> None:
    expected = pyproject_requirements()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs, "no conda env files under envs/"
    for path in envs:
        found = conda_requirements(path)
        python = found.pop("python")
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        assert "3.11" in python and "3.11" in SpecifierSet(project["requires-python"])
        assert found == expected, f"{path.name} differs from pyproject.toml"


def test_torch_ranges_admit_the_pinned_local_builds() -> None:
    reqs = pyproject_requirements()
    assert "2.14.1" in reqs["pytorch"] and "0.29.1" in reqs["torchvision"]
    assert reqs["pytorch"] != SpecifierSet("==2.14.1"), "torch must be a compatible range, not a pin"


def test_every_rule_uses_an_env_file_that_exists() -> None:
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for line in smk.read_text().splitlines():
            if line.strip().startswith('"../../envs/'):
                assert (smk.parent / line.strip().strip('"')).resolve().exists(), line


def test_an_installed_package_validates_configs_alone(tmp_path: Path) -> None:
    """A wheel (not an editable install) carries the config schema: load_schema and validate_config work from an
    install outside the repository."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools")
    wheel = tmp_path / "wheel"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", str(REPO), "-w", str(wheel)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    [path] = wheel.glob("firstlayer-*.whl")
    assert "firstlayer/config.schema.yaml" in zipfile.ZipFile(path).namelist()
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(path)], check=True, timeout=300)
    code = (
        "import sys, yaml; from firstlayer.config import validate_config; import firstlayer; "
        f"validate_config(yaml.safe_load(open({str(REPO / 'config.yaml')!r}))); print(firstlayer.__file__)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(target / "firstlayer" / "__init__.py")
