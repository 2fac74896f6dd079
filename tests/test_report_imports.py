"""The report and LLM packages are free of import circles (lazy imports inside functions included) and keep
their modules under ~400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import neuronscope

ROOT = Path(neuronscope.__file__).parent
CHECKED = ("neuronscope.report", "neuronscope.llm")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = ["neuronscope", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports anywhere in its body (function-level imports count)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_relative_and_lazy_imports():
    g = import_graph()
    assert "neuronscope.report.data" in g["neuronscope.report.build"]  # imported inside build_report
    assert "neuronscope.models.registry" in g["neuronscope.report.data"]
    assert "neuronscope.llm.errors" in g["neuronscope.llm.client"]


def test_no_import_circle_through_report_or_llm():
    bad = [c for c in cycles(import_graph()) if any(m.startswith(CHECKED) for m in c)]
    assert bad == []


@pytest.mark.parametrize("package", ["report", "llm"])
def test_modules_stay_small(package):
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / package).glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
