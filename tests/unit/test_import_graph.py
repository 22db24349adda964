"""The layer's domain packages depend one way: no cycle between them, and the shared modules import none of them.

Read from the source with ast, every import counted (also those inside
functions), so a cycle cannot hide in a lazy import.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

LAYER = Path(__file__).resolve().parents[2] / "layers" / "common" / "steward"
# The composition root builds every service: it sits above all of them by design.
ROOT_MODULES = {"composition"}


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _unit(module: str) -> str | None:
    """The package or top-level module of ``steward`` that a dotted name belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "steward" and len(parts) > 1 else None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in LAYER.rglob("*.py"):
        relative = path.relative_to(LAYER)
        unit = relative.parts[0].removesuffix(".py")
        edges = graph.setdefault(unit, set())
        edges.update(target for name in _imports(path) if (target := _unit(name)) not in (None, unit))
    return graph


def _packages() -> set[str]:
    return {path.name for path in LAYER.iterdir() if path.is_dir() and (path / "__init__.py").exists()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(unit: str) -> list[str] | None:
        if unit in visiting:
            return [*visiting[visiting.index(unit) :], unit]
        if unit in done:
            return None
        visiting.append(unit)
        for target in sorted(graph.get(unit, ())):
            found = visit(target)
            if found:
                return found
        visiting.pop()
        done.add(unit)
        return None

    for unit in sorted(graph):
        found = visit(unit)
        if found:
            return found
    return None


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "users" in graph["segments"]  # a known edge: segments read users
    assert {"devices", "users", "segments", "criteria", "tags"} <= _packages()


def test_no_cycle_between_the_layers_packages_and_modules() -> None:
    graph = {unit: targets - ROOT_MODULES for unit, targets in _graph().items() if unit not in ROOT_MODULES}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


@pytest.mark.parametrize("unit", sorted(set(_graph()) - _packages() - ROOT_MODULES))
def test_shared_modules_import_no_domain_package(unit: str) -> None:
    # observability and the key builders in tables are shared; domains stand on them, never the reverse
    assert not _graph()[unit] & _packages(), f"steward.{unit} imports {sorted(_graph()[unit] & _packages())}"


def test_a_cycle_is_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
