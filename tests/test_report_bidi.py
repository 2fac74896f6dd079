"""Bidirectional text in labels and descriptions: a U+202E (right-to-left override) in an LLM-written label must not
reverse the rest of the line. Controls are stripped (Python pages and report.js) and untrusted text is isolated."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from browser import launch_browser, open_page
from neuronscope.report.html import neuron_page_name, render_site
from neuronscope.report.markup import BIDI_CONTROLS, clean

RLO, PDF, LRI, PDI, RLM = "\u202e", "\u202c", "\u2066", "\u2069", "\u200f"
HEBREW = "שלום"
CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _inputs() -> tuple[list[dict], list[dict], dict]:
    mode = {"label": f"abc{RLO}def", "description": f"before {RLO}after{PDF} and {LRI}more{PDI}{RLM}",
            "score": 0.5, "exemplars": [{"pieces": [" x", f"{RLO}tok", " y"], "acts": [0.0, 1.0, 0.0], "focus": 1,
                                         "activation": 1.0, "position": 7}]}
    neuron = {"layer": 0, "index": 1, "model": f"m{RLO}odel",
              "methods": {"neuronscope": {"text": f"t{RLO}ext", "score": 0.5, "modes": [mode, {"label": HEBREW}]}}}
    row = {"layer": 0, "index": 1, "n_modes": 2, "score": 0.5, "description": mode["description"],
           "labels": [mode["label"], HEBREW, RLO], "href": neuron_page_name(0, 1)}
    return [row], [neuron], {"corpus": f"c{RLO}orpus"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    rows, neurons, meta = _inputs()
    out = tmp_path_factory.mktemp("bidi")
    render_site(rows, neurons, out, title=f"title{RLO}x", meta=meta)
    return out


def test_clean_strips_every_bidi_control_and_keeps_rtl_text():
    assert clean("a" + CONTROLS + "b") == "ab"
    assert clean(HEBREW) == HEBREW
    assert all(BIDI_CONTROLS.fullmatch(c) for c in CONTROLS)


def test_python_pages_hold_no_bidi_control_and_isolate_text(site):
    index = (site / "index.html").read_text()
    page = (site / neuron_page_name(0, 1)).read_text()
    for text in (index, page):
        assert not BIDI_CONTROLS.search(text)
    assert '<span class="label" dir="auto">abcdef</span>' in page
    assert f'<span class="label" dir="auto">{HEBREW}</span>' in page  # right-to-left text itself is kept
    assert '<p class="desc" dir="auto">before after and more</p>' in page
    assert '<p class="text" dir="auto">text</p>' in page
    assert ">tok</span>" in page
    assert "model" in page
    assert "<title>titlex</title>" in index
    assert '<dd dir="auto">corpus</dd>' in index
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', index, re.S).group(1)
    row = json.loads(block)["rows"][0]
    assert row["labels"] == ["abcdef", HEBREW]  # a label of nothing but a control is no label
    assert row["description"] == "before after and more"


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as b:
        yield b


# Left edges of each character of an element's (only) text node, in logical order: increasing when the text is
# laid out left to right, as "abcdef" must be; an un-isolated U+202E before "def" would lay out "abcfed".
_XS = """el => { const t = el.firstChild; const xs = [];
  for (let i = 0; i < t.length; i++) { const r = document.createRange(); r.setStart(t, i); r.setEnd(t, i + 1);
    xs.push(r.getBoundingClientRect().left); }
  return xs; }"""


def test_neuron_page_label_reads_left_to_right(site, browser):
    page, log = open_page(browser, site / neuron_page_name(0, 1))
    try:
        label = page.locator("span.label").first
        assert label.text_content() == "abcdef"
        xs = label.evaluate(_XS)
        assert xs == sorted(xs)
        assert label.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
        assert page.locator("p.desc").first.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
        assert page.locator("#top span.tok.focus, span.tok.focus").first.evaluate(
            "el => getComputedStyle(el).unicodeBidi") == "isolate"
        assert not BIDI_CONTROLS.search(page.inner_text("body"))
        assert log.problems == []
    finally:
        page.close()


def test_report_js_strips_controls_itself(site, browser, tmp_path):
    # The JSON block is written clean by Python; put the controls back to test report.js's own text path.
    index = (site / "index.html").read_text()
    hostile = index.replace('"abcdef"', '"abc\\u202edef"').replace('"before after', '"before \\u202eafter\\u2066')
    assert hostile != index
    for name in ("assets/report.css", "assets/report.js"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes((site / name).read_bytes())
    (tmp_path / "index.html").write_text(hostile)
    page, log = open_page(browser, tmp_path / "index.html")
    try:
        chips = page.locator("#neuron-table span.label")
        assert [chips.nth(k).text_content() for k in range(chips.count())] == ["abcdef", HEBREW]
        assert chips.first.get_attribute("dir") == "auto"
        assert chips.first.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
        xs = chips.first.evaluate(_XS)
        assert xs == sorted(xs)
        desc = page.locator("#neuron-table span.desc-text").first
        assert desc.text_content() == "before after and more"
        assert desc.get_attribute("dir") == "auto"
        assert not BIDI_CONTROLS.search(page.inner_text("#neuron-table"))
        page.fill("#search", "abcdef")  # search sees the cleaned text
        assert page.locator("tr.neuron-row").count() == 1
        assert log.problems == []
    finally:
        page.close()
