"""The compiled core's facade: ``_core.pyi`` matches the built extension, only ``native`` imports it,
and a missing or stale build is a clear error."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest

import neuronscope
from neuronscope import cluster, native
from neuronscope.errors import NeuronscopeError

PACKAGE = Path(neuronscope.__file__).parent
STUB = PACKAGE / "_core.pyi"

Param = tuple[str, str, object]  # (name, "positional" | "keyword", default or _NO_DEFAULT)
_NO_DEFAULT = "<no default>"


def _params(fn: ast.FunctionDef) -> list[Param]:
    """Every parameter of a parsed signature: name, kind and default (a literal)."""
    a = fn.args
    if a.vararg or a.kwarg or a.posonlyargs:
        raise AssertionError(f"{fn.name}: *args, **kwargs and positional-only parameters are not expected")
    pos_defaults = [_NO_DEFAULT] * (len(a.args) - len(a.defaults)) + [ast.literal_eval(d) for d in a.defaults]
    out = [(p.arg, "positional", d) for p, d in zip(a.args, pos_defaults, strict=True)]
    out += [(p.arg, "keyword", _NO_DEFAULT if d is None else ast.literal_eval(d))
            for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    return out


def stub_signatures() -> dict[str, list[Param]]:
    """Public functions of ``_core.pyi`` (its ``_``-prefixed names are type aliases)."""
    tree = ast.parse(STUB.read_text())
    return {node.name: _params(node) for node in tree.body
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}


def extension_signatures() -> dict[str, list[Param]]:
    """Public members of the built extension, each parsed from the signature pybind11 writes first in its doc."""
    core = native.core()
    out = {}
    for name in dir(core):
        if name.startswith("__"):
            continue
        member = getattr(core, name)
        assert callable(member), f"_core.{name} is not a function: the stub test only knows functions"
        first = (member.__doc__ or "").splitlines()[0]
        assert first.startswith(f"{name}("), f"_core.{name}: no single pybind11 signature in its doc: {first!r}"
        (fn,) = ast.parse(f"def {first}: ...").body
        out[name] = _params(fn)
    return out


@pytest.fixture(scope="module")
def extension() -> dict[str, list[Param]]:
    if not native.available():
        pytest.fail(native.unavailable_reason())
    return extension_signatures()


def test_stub_names_exactly_the_extension_functions(extension):
    stub = stub_signatures()
    assert sorted(stub) == sorted(extension), (
        f"only in _core.pyi: {sorted(set(stub) - set(extension))}; "
        f"only in the extension: {sorted(set(extension) - set(stub))}")
    assert sorted(native.MEMBERS) == sorted(extension)


def test_stub_parameters_match_the_extension(extension):
    """Same parameter names, in the same order, of the same kind (keyword-only or not), same defaults."""
    stub = stub_signatures()
    bad = {name: {"stub": stub.get(name), "extension": want} for name, want in extension.items()
           if stub.get(name) != want}
    assert not bad, bad


def test_only_native_imports_the_core():
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names]
                if "_core" in names or (node.module or "").endswith("_core"):
                    importers.append(path.relative_to(PACKAGE).as_posix())
            elif isinstance(node, ast.Import) and any(a.name.endswith("._core") for a in node.names):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert importers == ["native.py"]


def test_a_stale_core_is_a_clear_error():
    stale = types.SimpleNamespace(**{name: None for name in native.MEMBERS if name != "mine_update"},
                                  __file__="/old/_core.so")
    with pytest.raises(native.CoreUnavailableError, match=r"/old/_core\.so is stale.*lacks mine_update.*pip install"):
        native.check(stale)
    full = types.SimpleNamespace(**{name: None for name in native.MEMBERS})
    assert native.check(full) is full


@pytest.fixture
def no_core(monkeypatch):
    """The package as if the extension had never been built."""
    native._load.cache_clear()
    monkeypatch.delattr(neuronscope, "_core", raising=False)
    monkeypatch.setitem(sys.modules, "neuronscope._core", None)  # makes the import fail
    yield
    monkeypatch.undo()
    native._load.cache_clear()


def test_a_missing_core_is_a_clear_error(no_core):
    assert not native.available()
    assert "cannot be imported" in native.unavailable_reason()
    with pytest.raises(native.CoreUnavailableError, match="build it: python3 -m pip install") as e:
        native.core()
    assert isinstance(e.value, ImportError)
    assert isinstance(e.value, NeuronscopeError)
    with pytest.raises(native.CoreUnavailableError):  # the callers fail the same way
        cluster.pairwise_distances([[0.0, 1.0], [1.0, 0.0]])
