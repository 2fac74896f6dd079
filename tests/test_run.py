"""``neuronscope run`` end to end on a small real job: mine → screen → explain → search → report, resumed.

The corpus carries HTML/JS payloads in every paragraph, so the report's exemplars are full of them;
headless Chromium must show them as text.
"""

from __future__ import annotations

import json
import pydoc_data.topics as topics

import numpy as np
import pytest
import torch

from neuronscope.errors import ConfigError
from neuronscope.pipeline import RunConfig, run

PAYLOAD = "<script>alert(1)</script> and <img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    paragraphs = [p.strip() for t in list(topics.topics.values())[:40] for p in t.split("\n\n") if len(p.strip()) > 80]
    corpus = root / "corpus.txt"
    # The payload every few words, so that any exemplar window shows part of it.
    docs = [" ".join(w + (f" {PAYLOAD}" if i % 6 == 5 else "") for i, w in enumerate(p.split())) for p in paragraphs]
    corpus.write_text("\n\n".join(docs[:50]))
    cfg = RunConfig(corpus=str(corpus), layers="1", k=16, seq_len=128, sample=3, polysemantic=2, rounds=2)
    res = run(root / "out", cfg, quiet=True)
    return root / "out", cfg, res


def test_run_produces_every_artifact(small_run):
    out, _cfg, res = small_run
    assert res.report == out / "report" / "index.html"
    assert res.report.exists()
    assert (out / "store" / "manifest.json").exists()
    rows = [json.loads(line) for line in (out / "explanations.jsonl").read_text().splitlines()]
    assert len(res.neurons) == 5
    assert sorted({(r["layer"], r["index"]) for r in rows}) == res.neurons
    assert {r["method"] for r in rows} == {"neuronscope", "single-pass"}
    screen = [json.loads(line) for line in (out / "screen.jsonl").read_text().splitlines()]
    assert len(screen) == 1536
    top = [(r["layer"], r["index"]) for r in screen[:2]]
    assert all(x in res.neurons for x in top)  # the screen's strongest candidates are explained
    state = json.loads((out / "run.json").read_text())
    assert set(state["stages"]) == {"mine", "screen", "explain", "search", "report"}
    assert [tuple(x) for x in state["neurons"]] == res.neurons
    for layer, index in res.neurons:
        assert (out / "report" / "neurons" / f"L{layer}_N{index}.html").exists()
    from neuronscope.search import search

    hits = search("tokens of the code", out, k=3)
    assert 1 <= len(hits) <= 3
    assert all((h.layer, h.index) in res.neurons for h in hits)


def test_report_views_match_the_store(small_run):
    """Mode exemplars are tokens the mode's conditions fire on; the histogram counts every token."""
    from neuronscope.explanations.conditions import ConditionEvaluator
    from neuronscope.explanations.model import Explanation
    from neuronscope.explanations.vocab import Vocab
    from neuronscope.report.data import neuron_view
    from neuronscope.store import open_store

    out, _, res = small_run
    store = open_store(out / "store")
    ev = ConditionEvaluator(Vocab.from_tokenizer(store.tokenizer()))
    rows = [json.loads(line) for line in (out / "explanations.jsonl").read_text().splitlines()]
    layer, index = res.neurons[0]
    mine = [r for r in rows if (r["layer"], r["index"]) == (layer, index)]
    view = neuron_view(store, ev, layer, index, mine)
    assert sum(view["hist"]["counts"]) == view["stats"]["count"] == store.n_tokens_seen
    rec = store.neuron(layer, index)
    assert [x["activation"] for x in view["top"]] == pytest.approx([e.activation for e in rec.top[:12]], abs=1e-4)
    for x in view["top"]:
        assert x["acts"][x["focus"]] == pytest.approx(x["activation"], abs=1e-3)  # recomputed = mined
    for r in mine:
        e = Explanation.from_dict(r["explanation"])
        for m, mv in zip(e.modes, view["methods"][r["method"]]["modes"], strict=True):
            for x in mv["exemplars"]:
                p = x["position"]
                # left context, and the next token (a context term's ``next_token`` conditions read it)
                lo, hi = max(0, p - 40), min(p + 2, len(store.tokens.tokens))
                ids = store.tokens.tokens[lo:hi].astype(np.int64)
                fired = ev.evaluate_mode(m, torch.as_tensor(ids), torch.as_tensor(store.tokens.doc_of(
                    np.arange(lo, hi)).astype(np.int64)))
                assert bool(fired[p - lo]), (m.label, x["pieces"][x["focus"]])


def test_second_run_recomputes_nothing(small_run, monkeypatch, capsys):
    out, cfg, res = small_run
    before = {p: p.read_bytes() for p in (out / "explanations.jsonl", out / "report" / "build.json",
                                          out / "search" / "entries.json", out / "screen.jsonl")}

    def forbidden(*a, **k):
        raise AssertionError("a resumed run recomputed something")

    import neuronscope.models.hooks as hooks
    import neuronscope.report.build as build
    import neuronscope.screen as screen_mod
    import neuronscope.search as search_mod

    monkeypatch.setattr(hooks, "layer_activations", forbidden)  # no forward pass at all
    monkeypatch.setattr(screen_mod, "screen", forbidden)
    monkeypatch.setattr(search_mod, "build_index", forbidden)
    monkeypatch.setattr(build, "build_report", forbidden)
    again = run(out, cfg)
    said = capsys.readouterr().out
    assert said.count("done, kept") == 5, said
    assert again.neurons == res.neurons
    for p, data in before.items():
        assert p.read_bytes() == data


def test_run_refuses_other_mining_settings(small_run):
    out, cfg, _ = small_run
    from dataclasses import replace

    with pytest.raises(ConfigError, match="other settings"):
        run(out, replace(cfg, k=8), quiet=True)
    with pytest.raises(ConfigError, match="batch_tokens"):  # named at the run's own check, before mining
        run(out, replace(cfg, batch_tokens=cfg.batch_tokens * 2), quiet=True)


def test_report_in_a_browser_shows_payloads_as_text(small_run):
    from browser import launch_browser, open_page

    out, _, res = small_run
    html = (out / "report" / "neurons" / f"L{res.neurons[0][0]}_N{res.neurons[0][1]}.html").read_text()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    with launch_browser() as b:
        page, log = open_page(b, out / "report" / "index.html")
        assert page.locator("tr.neuron-row").count() == len(res.neurons)
        page.close()
        shown = 0
        for layer, index in res.neurons:
            page, log = open_page(b, out / "report" / "neurons" / f"L{layer}_N{index}.html")
            text = page.inner_text("body")
            assert page.locator("img").count() == 0
            assert page.evaluate("window.__pwned") is None
            assert page.locator("div.mode").count() >= 1
            shown += "alert" in text and "onerror" in text
            assert log.problems == [], log.problems
            page.close()
        assert shown >= 1  # the payload tokens are on the pages, as text
