"""The report and LLM packages are free of import circles (lazy imports inside functions included) and keep
their modules under ~400 lines (the import walker is the package-wide one of ``test_structure``)."""

from __future__ import annotations

import pytest

from test_structure import ROOT, _cycles, _graph

CHECKED = ("neuronscope.report", "neuronscope.llm")
MAX_LINES = 400


def test_graph_sees_relative_and_lazy_imports():
    g = _graph()
    assert "neuronscope.report.data" in g["neuronscope.report.build"]  # imported inside build_report
    assert "neuronscope.models.registry" in g["neuronscope.report.data"]
    assert "neuronscope.llm.errors" in g["neuronscope.llm.client"]


def test_no_import_circle_through_report_or_llm():
    bad = [c for c in _cycles(_graph()) if any(m.startswith(CHECKED) for m in c)]
    assert bad == []


@pytest.mark.parametrize("package", ["report", "llm"])
def test_modules_stay_small(package):
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / package).glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
