"""Undefined correlations (NaN / None: constant prediction, constant truth, one token) read "undefined" in the
report — never 0.00, never "nan" — and the index sorts and filters them like missing scores, not as zeros."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from browser import launch_browser, open_page
from neuronscope.explanations.model import Explanation, Mode
from neuronscope.report.data import index_row, method_view
from neuronscope.report.html import neuron_page_name, render_site
from neuronscope.report.markup import UNDEFINED_WHY

NAN = float("nan")


def _neurons() -> list[dict]:
    return [
        {"layer": 0, "index": 1, "methods": {
            "neuronscope": {
                "score": NAN, "top_score": None, "coverage": 0.0,
                "modes": [{"label": "never", "description": "fires nowhere", "score": NAN},
                          {"label": "fine", "score": 0.5}],
                "rounds": [{"round": 0, "train_score": NAN, "heldout_score": None, "modes": 1},
                           {"round": 1, "train_score": 0.3, "heldout_score": 0.2, "modes": 2}],
            },
            "single-pass": {"score": 0.4, "modes": [{"label": "x", "score": None}]},
        }},
        {"layer": 0, "index": 2, "methods": {"neuronscope": {"modes": [{"label": "unscored"}]}}},
        {"layer": 0, "index": 3, "methods": {"neuronscope": {"score": 0.0, "top_score": 0.0,
                                                             "modes": [{"label": "zero", "score": 0.0}]}}},
    ]


def _rows() -> list[dict]:
    return [
        *(index_row(n, neuron_page_name(n["layer"], n["index"])) for n in _neurons()),
        {"layer": 0, "index": 4, "score": 0.7, "baseline_score": NAN},
        {"layer": 0, "index": 5, "score": "nan", "baseline_score": None},  # delphi writes the string "nan"
        {"layer": 0, "index": 6, "score": 0.9, "baseline_score": 0.5},
        {"layer": 0, "index": 7, "score": 0.2},
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("undefined")
    render_site(_rows(), _neurons(), out, title="t", meta={})
    return out


def _rows_json(site: Path) -> dict[tuple[int, int], dict]:
    html = (site / "index.html").read_text()
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S).group(1)
    assert "NaN" not in block
    return {(r["layer"], r["index"]): r for r in json.loads(block)["rows"]}


def _visible(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


# ---- Python-rendered pages ------------------------------------------------------------------------------


def test_index_rows_mark_undefined_apart_from_missing(site):
    rows = _rows_json(site)
    assert {k: r["undefined"] for k, r in rows.items()} == {
        (0, 1): ["score", "delta"],  # undefined against a defined baseline: the difference is undefined too
        (0, 2): [],  # never scored: missing, not undefined
        (0, 3): [],  # a real 0.0 is a number
        (0, 4): ["baseline", "delta"],
        (0, 5): ["score", "baseline", "delta"],
        (0, 6): [],
        (0, 7): [],  # no baseline: the difference is missing
    }
    assert [rows[k]["score"] for k in sorted(rows)] == [None, None, 0.0, 0.7, None, 0.9, 0.2]
    assert rows[0, 6]["delta"] == pytest.approx(0.4)


def test_neuron_page_says_undefined_not_zero_or_nan(site):
    page = (site / neuron_page_name(0, 1)).read_text()
    undef = f'<span class="undef" title="{UNDEFINED_WHY}">undefined</span>'
    main = page[page.index('data-method="neuronscope"'):page.index('data-method="single-pass"')]
    assert f"score <b>{undef}</b>" in main
    assert f"top score <b>{undef}</b>" in main
    assert f"score {undef} · coverage" in main  # the mode that never fires
    assert "score 0.50 · coverage" in main
    assert f'<td class="num">0</td><td class="num">{undef}</td><td class="num">{undef}</td>' in main
    assert '<td class="num">1</td><td class="num">0.30</td><td class="num">0.20</td>' in main
    assert page.count(undef) == 6  # the five above and the single-pass mode's None
    assert "0.00" not in page
    assert not re.search(r"\bnan\b", _visible(page), re.I)


def test_missing_is_a_dash_and_zero_is_zero(site):
    unscored = (site / neuron_page_name(0, 2)).read_text()
    assert "undefined" not in _visible(unscored)
    assert "score <b>—</b>" in unscored
    assert "top score <b>—</b>" in unscored
    zero = (site / neuron_page_name(0, 3)).read_text()
    assert "undefined" not in _visible(zero)
    assert "score <b>0.00</b>" in zero
    assert "score 0.00 · coverage" in zero


def test_method_view_keeps_undefined_scores_from_the_explain_row():
    # A mode score of NaN is refused by Explanation.from_dict; the report must still show the neuron.
    e = Explanation(layer=0, index=1, method="neuronscope", modes=[
        Mode(label="never", scores={"score": 0.0, "coverage": 0.0}), Mode(label="fine", scores={"score": 0.5}),
        Mode(label="unscored")]).to_dict()
    e["modes"][0]["scores"]["score"] = NAN
    record = SimpleNamespace(top=[], samples=[])  # no windows: the evaluator is never asked
    row = {"explanation": e, "heldout": {"score": NAN, "coverage": 0.0}, "rounds": [], "transcript": []}
    view = method_view(row, record, None, [], [])
    assert "score" in view  # undefined, which is not missing
    assert view["score"] is None
    assert "top_score" not in view  # never computed: missing
    assert view["modes"][0]["score"] is None
    assert view["modes"][1]["score"] == 0.5
    assert "score" not in view["modes"][2]
    row["heldout"] = {"score": None, "top_score": 0.25}  # JSON null is undefined as well
    view = method_view(row, record, None, [], [])
    assert view["score"] is None
    assert view["top_score"] == 0.25
    assert math.isnan(e["modes"][0]["scores"]["score"])  # the caller's row is not modified
    e["modes"][1]["scores"]["score"] = "nan"  # delphi's spelling
    assert method_view(row, record, None, [], [])["modes"][1]["score"] is None


# ---- in Chromium ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as b:
        yield b


def _keys(page) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in page.eval_on_selector_all(
        "tr.neuron-row", "rs => rs.map(r => [r.dataset.layer, r.dataset.index])")]


def _cells(page, column: int) -> dict[tuple[int, int], str]:
    got = page.eval_on_selector_all(
        "tr.neuron-row", f"rs => rs.map(r => [r.dataset.index, r.cells[{column}].textContent])")
    return {(0, int(i)): text for i, text in got}


def test_index_shows_sorts_and_filters_undefined(site, browser):
    page, log = open_page(browser, site / "index.html")
    try:
        assert _cells(page, 3) == {(0, 1): "undefined", (0, 2): "—", (0, 3): "0.00", (0, 4): "0.70",
                                   (0, 5): "undefined", (0, 6): "0.90", (0, 7): "0.20"}
        assert _cells(page, 4) == {(0, 1): "0.40", (0, 2): "—", (0, 3): "—", (0, 4): "undefined",
                                   (0, 5): "undefined", (0, 6): "0.50", (0, 7): "—"}
        assert _cells(page, 5) == {(0, 1): "undefined", (0, 2): "—", (0, 3): "—", (0, 4): "undefined",
                                   (0, 5): "undefined", (0, 6): "+0.40", (0, 7): "—"}
        undef = page.locator("td.undef")
        assert undef.count() == 7
        for k in range(undef.count()):
            assert undef.nth(k).get_attribute("title") == UNDEFINED_WHY
        # "undefined" fits its column (no spill into the neighbour).
        assert page.eval_on_selector_all("td.undef", "ts => ts.every(t => t.scrollWidth <= t.clientWidth)")
        # Sorted by score: defined scores in order, then undefined and missing ones in input order, both ways.
        page.click("th[data-sort=score]")
        assert _keys(page) == [(0, 6), (0, 4), (0, 7), (0, 3), (0, 1), (0, 2), (0, 5)]
        page.click("th[data-sort=score]")
        assert _keys(page) == [(0, 3), (0, 7), (0, 4), (0, 6), (0, 1), (0, 2), (0, 5)]
        page.click("th[data-sort=delta]")
        assert _keys(page)[0] == (0, 6)
        page.fill("#min-score", "0")  # an undefined score is not >= 0: it is not a score at all
        assert sorted(_keys(page)) == [(0, 3), (0, 4), (0, 6), (0, 7)]
        assert log.problems == []
    finally:
        page.close()


def test_neuron_page_undefined_has_a_reason(site, browser):
    page, log = open_page(browser, site / neuron_page_name(0, 1))
    try:
        undef = page.locator("span.undef")
        assert undef.count() == 6
        assert {undef.nth(k).inner_text() for k in range(6)} == {"undefined"}
        assert {undef.nth(k).get_attribute("title") for k in range(6)} == {UNDEFINED_WHY}
        assert "nan" not in page.inner_text("body").lower().split()
        assert log.problems == []
    finally:
        page.close()
