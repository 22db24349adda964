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
    return _imports_of_text(path.read_text(), path)


def _imports_of_text(source: str, path: Path) -> Iterator[str]:
    """Every module a file imports, as dotted names: ``from steward import x`` and relative imports too."""
    package = ["steward", *path.relative_to(LAYER).parent.parts]
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # a name may be a submodule
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


def test_every_form_of_import_is_read() -> None:
    source = "from steward import users\nfrom . import lifecycle\nfrom ..tags import models\nimport steward.apps.keys\n"
    module = LAYER / "devices" / "example.py"

    found = {_unit(name) for name in _imports_of_text(source, module)}

    assert {"users", "devices", "tags", "apps"} <= found


def test_a_cycle_is_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
