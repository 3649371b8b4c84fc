"""firstlayer.codehash: the import closure read from the source covers what a script really imports, and the hash
moves with statements, not with comments or docstrings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from firstlayer.codehash import code_hash, import_closure, source_digest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
#: Modules that profile first layers: training must not import them (an edit there never re-trains).
PROFILING = {"firstlayer.energy", "firstlayer.theory", "firstlayer.analysis", "firstlayer.profile"}

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


@pytest.fixture(scope="module")
def imported() -> dict[str, set[str]]:
    """Per workflow script, the firstlayer modules its imports load, measured in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO / "workflow"), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr
    return {Path(path).name: set(modules) for path, modules in json.loads(proc.stdout).items()}


def test_every_script_is_measured(imported: dict[str, set[str]]) -> None:
    assert set(imported) == {path.name for path in SCRIPTS}
    assert all(modules for modules in imported.values()), "every script imports some of the package"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_the_closure_covers_what_a_script_imports(script: Path, imported: dict[str, set[str]]) -> None:
    """Read from the source, the closure holds every module the script's imports load (it may hold more: imports
    inside functions count too)."""
    assert imported[script.name] <= set(import_closure(script)), imported[script.name] - set(import_closure(script))


def test_training_code_does_not_import_the_profiling_code() -> None:
    closure = set(import_closure(REPO / "workflow" / "scripts" / "train.py"))
    assert "firstlayer.models" in closure  # sanity: the closure is not empty
    assert not closure & PROFILING, closure & PROFILING


def test_imports_inside_functions_and_by_name_count(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import importlib\n\ndef f():\n    from firstlayer.energy import energy_profile\n"
        "    return importlib.import_module('firstlayer.theory')\n"
    )
    assert {"firstlayer", "firstlayer.energy", "firstlayer.theory"} <= set(import_closure(script))


def test_comments_and_docstrings_do_not_change_the_hash(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text('"""Doc."""\nfrom firstlayer.energy import energy_profile\n\nx = energy_profile  # why\n')
    before = code_hash(script)
    other = '"""Other doc."""\n# a comment\nfrom firstlayer.energy import energy_profile\nx = energy_profile\n'
    script.write_text(other)
    assert code_hash(script) == before
    script.write_text('"""Doc."""\nfrom firstlayer.energy import energy_profile\n\nx = [energy_profile]\n')
    assert code_hash(script) != before


def test_a_module_edit_changes_the_digest(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f(x):\n    '''Twice.'''\n    return 2 * x\n")
    before = source_digest(module)
    module.write_text("def f(x):\n    '''Twice x.'''\n    # doubled\n    return 2 * x\n")
    assert source_digest(module) == before
    module.write_text("def f(x):\n    '''Twice.'''\n    return 3 * x\n")
    assert source_digest(module) != before


def test_the_schema_counts_where_config_is_imported() -> None:
    """The schema's defaults are read at run time (training settings): it is part of the code of a script that
    imports firstlayer.config."""
    script = REPO / "workflow" / "scripts" / "train.py"
    assert "firstlayer.config" in import_closure(script)
