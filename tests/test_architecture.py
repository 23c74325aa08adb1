"""The import graph (issue 24): imports only run from a higher layer to a lower one, and no module imports
itself round a circle. Function-level (lazy) imports count: they are still dependencies.

Layers, highest first (docs/architecture.md): ``cli`` → ``batch``, ``inspect``, ``ui`` → ``pipeline`` → ``engine`` →
``models``, ``ops``, ``uvmap``, ``io``, ``weights`` → ``errors``, ``paths`` → ``densepose_adapter``.
Modules of one layer may import each other (without circles).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Package prefix → layer (higher imports lower). The longest matching prefix wins.
LAYERS = {
    "retarget.__main__": 8, "retarget.cli": 7, "retarget.batch": 6, "retarget.inspect": 6, "retarget.ui": 6,
    "retarget.pipeline": 5,
    "retarget.engine": 4, "retarget.models": 3, "retarget.ops": 3, "retarget.uvmap": 3, "retarget.io": 3,
    "retarget.weights": 3, "retarget": 2, "retarget.errors": 2, "retarget.paths": 2, "densepose_adapter": 1,
}


def modules() -> dict[str, Path]:
    found = {}
    for package in ("retarget", "densepose_adapter"):
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the project modules it imports anywhere in its source (module level or inside functions)."""

    def resolve(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in found.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name)
                if target and target != module:
                    graph[module].add(target)
    return graph


def layer(module: str) -> int:
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module}: no layer (add its package to LAYERS and docs/architecture.md)"
    return LAYERS[max(prefixes, key=len)]


def cycles(graph: dict[str, set[str]], nodes) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def test_imports_run_downwards_only():
    found = modules()
    graph = import_graph(found)
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a))
    assert upward == [], "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_circles():
    found = modules()
    assert cycles(import_graph(found), found) == []


def test_the_checks_can_fail():
    """The graph sees lazy imports, relative imports and circles (a tiny synthetic graph)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph, "abcd") == [["a", "b", "c"]]
    found = modules()
    graph = import_graph(found)
    assert "retarget.pipeline.texture" in graph["retarget.pipeline.job"]  # a function-level import
    assert layer("retarget.pipeline.job") > layer("retarget.engine.calibration") > layer("retarget.models.refiner")
    assert layer("retarget.errors") > layer("densepose_adapter.rcnn.model")
