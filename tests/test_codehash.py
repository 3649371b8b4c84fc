"""firstlayer.codehash: the import closure read from the source covers what a script really imports, and the hash
moves with statements, not with comments or docstrings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import measured_imports

from firstlayer.codehash import code_hash, config_hash, import_closure, source_digest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
#: Modules that profile first layers: training must not import them (an edit there never re-trains).
PROFILING = {"firstlayer.energy", "firstlayer.theory", "firstlayer.analysis", "firstlayer.profile"}


@pytest.fixture(scope="module")
def imported() -> dict[str, set[str]]:
    """Per workflow script, the firstlayer modules its imports load, measured in a fresh interpreter."""
    return measured_imports(SCRIPTS)


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


def test_config_hash_is_stable_and_order_free():
    a = config_hash({"x": 1, "y": [1, 2]})
    assert a == config_hash({"y": [1, 2], "x": 1})
    assert re.fullmatch(r"[0-9a-f]{12}", a)
    assert a != config_hash({"x": 2, "y": [1, 2]})


# ------------------------------------------------------------------------ training options
