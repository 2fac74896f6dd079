"""The package's structure: no import circles (module-level or deferred), one module imports ``_core``,
modules stay small unless they say why."""

from __future__ import annotations

import ast
from pathlib import Path

import neuronscope

ROOT = Path(neuronscope.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every package module ``path`` imports at run time (top level or inside functions; not under TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()

    def resolve(mod: str | None, level: int) -> str:
        if level == 0:
            return mod or ""
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([mod] if mod else []))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node.module, node.level)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    out.add(sub)
                elif target in modules:
                    out.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files) | {"neuronscope._core"}  # the compiled extension
    graph = {m: _imports(p, modules) for m, p in files.items()}
    # Importing a.b.c runs a/__init__ and a/b/__init__ first: a package's own submodules are not edges
    # back into the package (that is how packages work), but everything else is.
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not m.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_has_no_cycles():
    graph = _graph()
    assert "neuronscope.agents.run" in graph
    assert "neuronscope.stage" in graph["neuronscope.agents.run"]
    assert _cycles(graph) == []


def test_only_one_module_imports_the_extension():
    users = sorted(m for m, deps in _graph().items() if "neuronscope._core" in deps)
    assert len(users) == 1, users


def test_modules_are_small_or_say_why():
    long = []
    for p in ROOT.rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > 420 and "why this module is long" not in text[:3000].lower():
            long.append(f"{p.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not long, long
