"""What made a result: a hash of its settings, and of its code: the firstlayer modules a workflow script imports
(its import closure, found by reading the source, not by importing it) hashed as one (docs/method.md, Results
depend on the code).

The hash covers each module's syntax tree without docstrings: editing a comment, a docstring or the layout changes
no result and reruns nothing; editing any statement does. The closure is over-approximated on purpose (imports
inside functions count, as do ``importlib.import_module("firstlayer.x")`` calls with a literal name): a spurious
rerun costs time, a missed one leaves a stale table. Torch-free and fast, so the Snakefile computes it when parsed.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = "firstlayer"
PACKAGE_DIR = Path(__file__).resolve().parent
#: Files the package reads at run time, hashed with the module that reads them.
DATA_FILES = {"firstlayer.config": ("config.schema.yaml",)}


def module_path(module: str) -> Path | None:
    """The source file of a firstlayer module ('firstlayer.energy' -> .../energy.py), None when there is none."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _import_call(node: ast.AST) -> str | None:
    """The literal module name of an ``importlib.import_module("...")`` call, else None."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return node.args[0].value if name == "import_module" and isinstance(node.args[0].value, str) else None


def _imported_names(node: ast.AST) -> list[str]:
    """Modules named by one import statement or call (for ``from a import b``: a, and a.b in case b is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    called = _import_call(node)
    return [called] if called else []


def direct_imports(path: str | Path) -> set[str]:
    """firstlayer modules that the file at `path` imports anywhere in its body (each with a source file)."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    names = {name for node in ast.walk(tree) for name in _imported_names(node)}
    found = set()
    for name in names:
        parts = name.split(".")
        # `import firstlayer.a.b` also imports firstlayer and firstlayer.a
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_path(".".join(parts[:i]))}
    return found


def import_closure(path: str | Path) -> dict[str, Path]:
    """Every firstlayer module the file at `path` imports, directly or through others: name -> source file."""
    closure: dict[str, Path] = {}
    pending = sorted(direct_imports(path))
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure[name] = module_path(name)
        pending.extend(sorted(direct_imports(closure[name]) - closure.keys()))
    return dict(sorted(closure.items()))


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """The tree without the docstrings of its module, classes and functions (they cannot change a result)."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _source_digest(path: Path, mtime_ns: int) -> str:
    """Digest of one Python file's syntax tree, docstrings and comments left out (cached per modification time)."""
    tree = _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def source_digest(path: str | Path) -> str:
    """Digest of what a Python file does: its syntax tree without docstrings; comments and layout do not count."""
    path = Path(path).resolve()
    return _source_digest(path, path.stat().st_mtime_ns)


def _data_digest(module: str) -> Iterable[tuple[str, str]]:
    for name in DATA_FILES.get(module, ()):
        yield name, hashlib.sha256((PACKAGE_DIR / name).read_bytes()).hexdigest()


def code_hash(script: str | Path) -> str:
    """16 hex digits naming the code a workflow script runs: the script and its firstlayer import closure."""
    parts = {"script": source_digest(script)}
    for module, path in import_closure(script).items():
        parts[module] = source_digest(path)
        parts.update(_data_digest(module))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object (the settings that produced an output)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def canonical(obj: Any) -> Any:
    """A copy with every mapping's keys sorted: Snakemake compares params as text, so key order must not matter."""
    return json.loads(json.dumps(obj, sort_keys=True))
