"""The static HTML report: escaping of untrusted text, missing keys, and the pages' behaviour in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from browser import launch_browser, open_page
from neuronscope.errors import ConfigError
from neuronscope.report.data import index_row
from neuronscope.report.html import neuron_page_name, render_site

SCRIPT_TOKEN = "<script>alert(1)</script>"
IMG_TOKEN = "<img src=x onerror=window.__pwned=1>"
EVIL_DESC = "</script><script>window.__pwned=2</script> \"quotes' & ampersands"
EVIL_LABEL = "<b onmouseover=window.__pwned=3>bold</b>"


def _ex(pieces: list[str], focus: int, acts: list[float] | None = None, position: int = 100) -> dict:
    act = acts[focus] if acts is not None else 2.0
    return {"pieces": pieces, "acts": acts, "focus": focus, "activation": act, "position": position}


def _mode(label: str, description: str, n_ex: int = 2, **scores) -> dict:
    exemplars = [
        _ex([" def", " f", "(", "2", ")"], 3, [0.0, -0.1, 0.2, 3.5 - k, 0.1], 1000 + k) for k in range(n_ex)
    ]
    return {
        "label": label,
        "description": description,
        "conditions": ["token ∈ {2, 3, 4}", "prev_token[-1] ∈ {(}"],
        "strength": 1.04,
        "score": 0.6,
        "coverage": 0.93,
        "share": 0.55,
        "exemplars": exemplars,
        **scores,
    }


def _method(modes: list[dict], score: float | None, rounds: int = 0, transcript: list | None = None) -> dict:
    return {
        "text": "",
        "score": score,
        "coverage": 0.9,
        "top_score": 0.8,
        "seconds": 3.1,
        "modes": modes,
        "rounds": [
            {"round": r, "train_score": 0.5 + 0.05 * r, "heldout_score": 0.45 + 0.06 * r, "modes": r + 1}
            for r in range(rounds)
        ],
        "transcript": transcript or [],
    }


def _neuron(layer: int, index: int, methods: dict, *, top: list | None = None, full: bool = True) -> dict:
    n: dict = {"layer": layer, "index": index, "model": "all-MiniLM-L6-v2", "methods": methods}
    if full:
        counts = [0] * 20
        for b, c in {3: 5, 4: 120, 5: 100000, 6: 20000, 9: 300, 12: 40, 15: 3, 19: 1}.items():
            counts[b] = c
        # Unequal bins, finer near zero, as in the store's logarithmic grid.
        edges = [
            -0.2,
            -0.1,
            -0.05,
            -0.01,
            -0.001,
            0.0,
            0.001,
            0.01,
            0.05,
            0.1,
            0.2,
            0.4,
            0.7,
            1.0,
            1.5,
            2.0,
            2.5,
            3.0,
            3.5,
            4.0,
            4.2,
        ]
        n["hist"] = {"lower": edges[:-1], "upper": edges[1:], "counts": counts}
        n["stats"] = {
            "count": 120469,
            "mean": 0.01,
            "std": 0.3,
            "min": -0.17,
            "max": 4.2,
            "frac_positive": 0.12,
        }
        n["quantiles"] = {"0.5": 0.0, "0.9": 0.3, "0.99": 1.2, "0.999": 2.5}
    n["top"] = top if top is not None else [_ex([" x", " = ", "2"], 2, [0.0, 0.1, 4.2])]
    return n


def _inputs() -> tuple[list[dict], list[dict], dict]:
    """Seven neurons over three layers: 3 modes, single-pass only, missing keys, and hostile text."""
    evil_top = [
        _ex([" a", SCRIPT_TOKEN, " and ", IMG_TOKEN, "\n", " end"], 1, [0.1, 4.0, 0.0, -0.15, 0.0, 0.2]),
        _ex([" plain", " text"], 0, None),
    ]
    transcript = [
        {
            "role": "hypothesis",
            "round": 0,
            "modes": [{"label": "2/3", "why": SCRIPT_TOKEN}],
            "note": "first try",
        },
        {
            "role": "evaluation",
            "round": 0,
            "scores": {"train": 0.61, "heldout": 0.58},
            "text": "line 1\nline 2",
        },
        {
            "role": "revision",
            "round": 1,
            "changes": ["split mode 1", IMG_TOKEN],
            "nested": {"a": {"b": [1, 2.5]}},
        },
    ]
    neurons = [
        _neuron(
            0,
            5,
            {
                "neuronscope": _method(
                    [
                        _mode("2/3/4/…", EVIL_DESC),
                        _mode(EVIL_LABEL, "Closing brackets"),
                        _mode("def/class", "Python keywords", n_ex=1),
                    ],
                    0.83,
                    rounds=3,
                    transcript=transcript,
                ),
                "single-pass": _method([_mode("digits", "Digits after an open bracket")], 0.55),
            },
            top=evil_top,
        ),
        _neuron(
            0,
            17,
            {
                "neuronscope": _method([_mode("the", "The word the")], 0.41),
                "single-pass": _method([_mode("the", "the")], 0.44),
            },
        ),
        _neuron(1, 2, {"single-pass": _method([_mode("commas", "Commas in lists")], 0.62)}),
        _neuron(1, 493, {"neuronscope": _method([_mode("a", "Alpha"), _mode("b", "Beta")], 0.7)}, full=False),
        {"layer": 1, "index": 900},
        _neuron(2, 7, {"neuronscope": {"modes": [{"label": "x"}, {"description": "only a description"}]}}),
        _neuron(2, 8, {"neuronscope": _method([_mode("dates", "Dates")], None)}),
    ]
    rows = [index_row(n, neuron_page_name(n["layer"], n["index"])) for n in neurons]
    rows[4] = {"layer": 1, "index": 900}  # an older run's row: nothing but the key
    rows[6]["score"] = float("nan")
    meta = {
        "model": "all-MiniLM-L6-v2",
        "corpus": "pydoc <img src=x onerror=window.__pwned=4>",
        "n_tokens": 120469,
        "created": "2025-01-01 00:00 UTC",
        "command": "neuronscope run --layers 0-2",
    }
    return rows, neurons, meta


def test_index_rows_are_index_row_of_the_views():
    """The rows the fixture feeds to the renderer are the real ``index_row`` of each view, as worked by hand."""
    rows, _, _ = _inputs()
    assert rows[0] == {  # both methods: neuronscope is the row, single-pass its baseline
        "layer": 0, "index": 5, "n_modes": 3, "score": 0.83, "baseline_score": 0.55,
        "description": EVIL_DESC + "; Closing brackets; Python keywords",
        "labels": ["2/3/4/…", EVIL_LABEL, "def/class"], "max_act": 4.2, "href": "neurons/L0_N5.html",
    }
    assert rows[1]["score"] == 0.41
    assert rows[1]["baseline_score"] == 0.44
    assert rows[2] == {  # single-pass only: it is the row's method, and there is no baseline to compare
        "layer": 1, "index": 2, "n_modes": 1, "score": 0.62, "description": "Commas in lists",
        "labels": ["commas"], "max_act": 4.2, "href": "neurons/L1_N2.html",
    }
    assert rows[3] == {  # no statistics in the view: no maximum
        "layer": 1, "index": 493, "n_modes": 2, "score": 0.7, "description": "Alpha; Beta", "labels": ["a", "b"],
        "max_act": None, "href": "neurons/L1_N493.html",
    }
    assert rows[5] == {  # modes without a description or a label, a method without a score
        "layer": 2, "index": 7, "n_modes": 2, "description": "; only a description", "labels": ["x", ""],
        "max_act": 4.2, "href": "neurons/L2_N7.html",
    }
    assert rows[6]["score"] != rows[6]["score"]  # NaN: set by the fixture over index_row's None
    text_only = {"layer": 4, "index": 1, "stats": {"max": 2.0}, "methods": {"neuronscope": {"text": "t", "modes": []}}}
    assert index_row(text_only, "x.html") == {
        "layer": 4, "index": 1, "n_modes": 0, "description": "t", "labels": [], "max_act": 2.0, "href": "x.html",
    }
    other = {"layer": 0, "index": 0, "stats": {"max": 1.0},
             "methods": {"a": {"score": 0.1, "modes": []}, "b": {"score": 0.2, "modes": []}}}
    assert index_row(other, "h.html", primary="b", baseline="a")["score"] == 0.2
    assert index_row(other, "h.html", primary="b", baseline="a")["baseline_score"] == 0.1


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    rows, neurons, meta = _inputs()
    out = tmp_path_factory.mktemp("site")
    index = render_site(rows, neurons, out, title="neuronscope · <i>test</i>", meta=meta)
    assert index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def browser():
    with launch_browser() as b:
        yield b


# ---- the generated files, no browser -----------------------------------------------------------------


def _data_block(html: str) -> str:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert m, "no inline JSON block"
    return m.group(1)


def test_files_and_relative_assets(site):
    _rows, neurons, _ = _inputs()
    assert neuron_page_name(3, 493) == "neurons/L3_N493.html"
    for n in neurons:
        assert (site / neuron_page_name(n["layer"], n["index"])).is_file()
    assert (site / "assets" / "report.css").is_file()
    assert (site / "assets" / "report.js").is_file()
    for page in [site / "index.html", *site.glob("neurons/*.html")]:
        text = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text), f"{page.name} loads something remote"
    assert "fetch(" not in (site / "assets" / "report.js").read_text()


def test_untrusted_text_is_escaped_in_source(site):
    page = (site / neuron_page_name(0, 5)).read_text()
    index = (site / "index.html").read_text()
    for text in (page, index):
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert "<b onmouseover" not in text
        assert "window.__pwned=2</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in page
    assert "&quot;quotes&#x27; &amp; ampersands" in page
    assert "&lt;i&gt;test&lt;/i&gt;" in index
    assert "onerror=window.__pwned=4&gt;" in index


def test_json_block_cannot_close_its_script(site):
    block = _data_block((site / "index.html").read_text())
    assert "</script" not in block.lower()
    assert "<" not in block
    assert ">" not in block
    assert "&" not in block
    data = json.loads(block)  # also proves no NaN slipped in: json.loads accepts it, so check explicitly
    assert "NaN" not in block
    by_key = {(r["layer"], r["index"]): r for r in data["rows"]}
    assert EVIL_DESC in by_key[0, 5]["description"]
    assert EVIL_LABEL in by_key[0, 5]["labels"]
    assert by_key[2, 8]["score"] is None
    assert by_key[1, 900]["n_modes"] is None


def test_missing_keys_render_as_dash(tmp_path):
    index = render_site(
        [{"layer": 0, "index": 1, "score": None, "labels": None}],
        [{"layer": 0, "index": 1, "stats": None, "methods": {"neuronscope": {}}}],
        tmp_path,
        title="t",
        meta={},
    )
    page = (tmp_path / neuron_page_name(0, 1)).read_text()
    assert "Layer 0 · Neuron 1" in page
    assert "—" in page
    assert 'data-method="neuronscope"' in page
    assert "No histogram" in page
    assert index.is_file()


def test_bad_keys_name_the_argument(tmp_path):
    with pytest.raises(ConfigError, match=r"index_rows\[0\]"):
        render_site([{"index": 1}], [], tmp_path, title="t", meta={})
    with pytest.raises(ConfigError, match=r"more than once"):
        render_site([], [{"layer": 0, "index": 1}, {"layer": 0, "index": 1}], tmp_path, title="t", meta={})
    with pytest.raises(ConfigError, match=r"neurons\[1\]"):
        render_site([], [{"layer": 0, "index": 1}, {"layer": "x", "index": 2}], tmp_path, title="t", meta={})


def test_unsafe_href_is_replaced(tmp_path):
    render_site(
        [{"layer": 0, "index": 1, "href": "javascript:window.__pwned=5"}], [], tmp_path, title="t", meta={}
    )
    rows = json.loads(_data_block((tmp_path / "index.html").read_text()))["rows"]
    assert rows[0]["href"] == "neurons/L0_N1.html"


def test_stale_pages_are_removed(tmp_path):
    render_site([], [{"layer": 0, "index": 1}, {"layer": 0, "index": 2}], tmp_path, title="t", meta={})
    (tmp_path / "neurons" / "notes.html").write_text("kept")
    render_site([], [{"layer": 0, "index": 2}], tmp_path, title="t", meta={})
    assert sorted(p.name for p in (tmp_path / "neurons").iterdir()) == ["L0_N2.html", "notes.html"]


# ---- in Chromium ---------------------------------------------------------------------------------------


def _visible_keys(page) -> list[tuple[int, int]]:
    return [
        (int(a), int(b))
        for a, b in page.eval_on_selector_all(
            "tr.neuron-row",
            "rs => rs.filter(r => r.offsetParent !== null).map(r => [r.dataset.layer, r.dataset.index])",
        )
    ]


def _shown(page) -> str:
    return page.inner_text("#shown-count")


def test_index_is_safe_and_clean(site, browser):
    page, log = open_page(browser, site / "index.html")
    try:
        assert log.problems == []
        assert page.evaluate("window.__pwned") is None
        body = page.inner_text("body")
        assert EVIL_DESC in body
        assert "<b onmouseover=window.__pwned=3>bold</b>" in body
        assert "pydoc <img src=x onerror=window.__pwned=4>" in body
        assert "<i>test</i>" in body
        assert page.title() == "neuronscope · <i>test</i>"
        assert len(_visible_keys(page)) == 7
        assert _shown(page) == "7 of 7 neurons shown"
    finally:
        page.close()


def test_index_filters(site, browser):
    rows, _, _ = _inputs()
    page, log = open_page(browser, site / "index.html")
    try:

        def hay(r):
            return "\n".join(
                [f"{r['layer']}:{r['index']}", r.get("description") or "", *(r.get("labels") or [])]
            ).lower()

        for needle in ("DIGITS", "python", "1:49", "ampersands"):
            page.fill("#search", needle)
            want = [(r["layer"], r["index"]) for r in rows if needle.lower() in hay(r)]
            assert _visible_keys(page) == want, needle
            assert _shown(page) == f"{len(want)} of 7 neurons shown"
        page.fill("#search", "")
        page.select_option("#layer-filter", "1")
        assert _visible_keys(page) == [(1, 2), (1, 493), (1, 900)]
        page.check("#poly-only")
        assert _visible_keys(page) == [(1, 493)]
        page.select_option("#layer-filter", "")
        assert _visible_keys(page) == [(r["layer"], r["index"]) for r in rows if (r.get("n_modes") or 0) >= 2]
        page.uncheck("#poly-only")
        page.fill("#min-score", "0.6")
        want = [(r["layer"], r["index"]) for r in rows if (r.get("score") or 0) >= 0.6]  # NaN and None fail
        assert _visible_keys(page) == want == [(0, 5), (1, 2), (1, 493)]
        page.fill("#search", "no such neuron")
        assert _visible_keys(page) == []
        assert _shown(page) == "0 of 7 neurons shown"
        assert log.problems == []
    finally:
        page.close()


def test_index_sorting(site, browser):
    rows, _, _ = _inputs()
    page, log = open_page(browser, site / "index.html")
    try:

        def score(r):
            s = r.get("score")
            return s if s is not None and s == s else None

        known = [r for r in rows if score(r) is not None]
        missing = [(r["layer"], r["index"]) for r in rows if score(r) is None]
        page.click("th[data-sort=score]")
        desc = [(r["layer"], r["index"]) for r in sorted(known, key=lambda r: -score(r))]
        assert _visible_keys(page) == desc + missing
        assert page.get_attribute("th[data-sort=score]", "aria-sort") == "descending"
        page.click("th[data-sort=score]")
        asc = [(r["layer"], r["index"]) for r in sorted(known, key=score)]
        assert _visible_keys(page) == asc + missing
        page.click("th[data-sort=index]")
        assert _visible_keys(page) == sorted(((r["layer"], r["index"]) for r in rows), key=lambda k: -k[1])
        assert log.problems == []
    finally:
        page.close()


def test_index_link_opens_neuron_page(site, browser):
    page, log = open_page(browser, site / "index.html")
    try:
        page.click('tr.neuron-row[data-layer="1"][data-index="2"] a')
        page.wait_for_load_state("load")
        assert page.url == (site / "neurons" / "L1_N2.html").resolve().as_uri()
        assert page.inner_text("h1") == "Layer 1 · Neuron 2"
        page.click("text=← All neurons")
        page.wait_for_load_state("load")
        assert page.url.endswith("/index.html")
        assert log.problems == []
    finally:
        page.close()


def test_neuron_page(site, browser):
    _, neurons, _ = _inputs()
    page, log = open_page(browser, site / neuron_page_name(0, 5))
    try:
        assert log.problems == []
        assert page.evaluate("window.__pwned") is None
        assert page.inner_text("h1") == "Layer 0 · Neuron 5"
        for method, n_modes in (("neuronscope", 3), ("single-pass", 1)):
            assert page.locator(f'section.method[data-method="{method}"] div.mode').count() == n_modes
        counts = neurons[0]["hist"]["counts"]
        assert page.locator("svg.hist rect.bar").count() == sum(c > 0 for c in counts)
        assert page.locator("svg.hist text.qlabel").count() >= 3
        assert page.locator('section.method[data-method="neuronscope"] ul.conditions li').count() == 6
        top = page.inner_text("#top")
        assert SCRIPT_TOKEN in top
        assert IMG_TOKEN in top
        page.click("details.transcript > summary")
        transcript = page.inner_text("details.transcript")
        assert SCRIPT_TOKEN in transcript
        assert IMG_TOKEN in transcript
        assert "line 2" in transcript
        body = page.inner_text("body")
        assert EVIL_DESC in body
        assert EVIL_LABEL in body
        focus = page.locator("#top span.tok.focus").first
        assert focus.inner_text() == SCRIPT_TOKEN
        assert focus.get_attribute("title") == "activation 4"
        # Two methods side by side on a wide screen, stacked on a narrow one.
        boxes = [
            page.locator(f'section.method[data-method="{m}"]').bounding_box()
            for m in ("neuronscope", "single-pass")
        ]
        assert boxes[0]["y"] == boxes[1]["y"]
        assert boxes[0]["x"] < boxes[1]["x"]
        page.set_viewport_size({"width": 700, "height": 900})
        boxes = [
            page.locator(f'section.method[data-method="{m}"]').bounding_box()
            for m in ("neuronscope", "single-pass")
        ]
        assert boxes[1]["y"] > boxes[0]["y"] + boxes[0]["height"] - 1
        assert page.evaluate("window.__pwned") is None
        assert log.problems == []
    finally:
        page.close()


def test_every_neuron_page_is_clean(site, browser):
    _, neurons, _ = _inputs()
    for n in neurons:
        page, log = open_page(browser, site / neuron_page_name(n["layer"], n["index"]))
        try:
            assert log.problems == [], neuron_page_name(n["layer"], n["index"])
            methods = n.get("methods", {})
            for name, m in methods.items():
                assert page.locator(f'section.method[data-method="{name}"] div.mode').count() == len(
                    m["modes"]
                )
            assert page.locator("section.method").count() == len(methods)
        finally:
            page.close()


def test_long_index_lists_rows_in_pages(tmp_path, browser):
    # Thousands of rows take seconds to lay out: the table lists 500 at a time, sorted over all of them.
    rows = [
        {"layer": k % 4, "index": k, "n_modes": 1 + k % 3, "score": (k * 7919 % 1201) / 1201}
        for k in range(1201)
    ]
    render_site(rows, [], tmp_path, title="t", meta={})
    page, log = open_page(browser, tmp_path / "index.html")
    try:
        assert page.locator("tr.neuron-row").count() == 500
        assert _shown(page) == "1201 of 1201 neurons shown (first 500 listed)"
        page.click("th[data-sort=score]")
        best = max(rows, key=lambda r: r["score"])
        assert _visible_keys(page)[0] == (best["layer"], best["index"])
        page.click("#show-more")
        page.click("#show-more")
        assert page.locator("tr.neuron-row").count() == 1201
        assert _shown(page) == "1201 of 1201 neurons shown"
        assert page.locator("#show-more").is_hidden()
        assert log.problems == []
    finally:
        page.close()
