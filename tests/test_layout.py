"""The package's layout: upper layers import lower ones, never the reverse (no cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "softmax_core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, anywhere in its code
    (an import inside a function is an edge too)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_pkg else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: The subpackages, lowest first: each imports only itself, those before it and the modules at
#: the package's top (errors, fileio, units), which import no subpackage.  Dask's machinery
#: (cluster, chunked data, engine metrics) sits below the backends, whose Dask adapter uses it.
LAYERS = (
    "model",
    "dask",
    "backends",
    "data",
    "measure",
    "runs",
    "baseline",
    "gate",
    "report",
    "cli",
)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """The imports of ``graph`` that go up :data:`LAYERS` (the package's ``__init__``, its
    public names, is left out)."""
    rank = {name: i for i, name in enumerate(LAYERS)}

    def layer(module: str) -> int | None:
        parts = module.split(".")
        if len(parts) < 2:
            return None  # softmax_core itself
        return rank.get(parts[1], -1)  # a top-level module: below every subpackage

    found = []
    for module, imports in graph.items():
        here = layer(module)
        found += [
            f"{module} -> {target}"
            for target in sorted(imports)
            if here is not None and (layer(target) or 0) > here
        ]
    return found


def test_each_subpackage_imports_only_the_layers_below_it():
    graph = import_graph()
    subpackages = {m.split(".")[1] for m in graph if m.count(".") >= 2}
    assert subpackages == set(LAYERS)  # a new subpackage takes its place in LAYERS
    assert upward_imports(graph) == []


def test_an_import_up_the_layers_is_found():
    graph = {"softmax_core.dask.cluster": {"softmax_core.backends.base", "softmax_core.errors"}}
    assert upward_imports(graph) == ["softmax_core.dask.cluster -> softmax_core.backends.base"]
    assert upward_imports({"softmax_core.errors": {"softmax_core.model.cost"}}) != []
