"""The modules of firstlayer import one another without a cycle. Imports inside functions and
``importlib.import_module("firstlayer.x")`` calls count (``firstlayer.codehash.direct_imports`` reads them from the
source): a cycle hidden behind a lazy import is still one. Modules are found by glob, so a new module is checked too."""

from __future__ import annotations

from pathlib import Path

from firstlayer.codehash import PACKAGE, PACKAGE_DIR, direct_imports


def module_name(path: Path) -> str:
    """'.../firstlayer/models.py' -> 'firstlayer.models' (a package's __init__.py -> the package)."""
    parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
    return ".".join((PACKAGE, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def import_graph() -> dict[str, set[str]]:
    """Each firstlayer module -> the firstlayer modules it imports anywhere in its source."""
    modules = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    return {name: direct_imports(path) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, ..., a], or None when it is acyclic (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if cycle := visit(child):
                return cycle
        path.pop()
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node))), None)


def test_no_import_cycle_among_the_modules() -> None:
    graph = import_graph()
    assert {"firstlayer.models", "firstlayer.modelspec", "firstlayer.config"} <= graph.keys()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_registry_sits_below_the_spec_resolver() -> None:
    """modelspec (every spec -> a ModelSpec, one build) imports models (the registry), never the reverse; the
    registry's builders reach the networks through function-level imports, which the graph sees."""
    graph = import_graph()
    assert "firstlayer.models" in graph["firstlayer.modelspec"]
    assert "firstlayer.modelspec" not in graph["firstlayer.models"]
    assert "firstlayer.networks" in graph["firstlayer.models"]


def test_a_cycle_is_found_and_named() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
