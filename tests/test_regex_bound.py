"""Regex work in conditions is bounded (issue 17 item 5): ``(.|.)*!`` hung ``explain`` and ``report`` at 100% CPU
under Python's ``re``; now it is an invalid condition, named, within a fraction of a second, and ordinary
patterns select exactly what ``re`` selects."""

from __future__ import annotations

import asyncio
import json
import re
import time

import numpy as np
import pytest
import torch

from llm_server import Reply, ScriptedServer, chat_body
from neuronscope.agents import OfflineConfig
from neuronscope.agents.llm_agents import LLMNeuronScope
from neuronscope.errors import ExplanationError
from neuronscope.explanations import (
    ConditionEvaluator,
    PrecedingRegex,
    TokenRegex,
    Vocab,
    condition_from_dict,
    patterns,
    read_explanations,
)
from neuronscope.llm import LLMClient, LLMConfig
from test_agents_offline import planted  # noqa: F401  (fixture)

BAD = "(.|.)*!"


@pytest.fixture
def probes_miss(monkeypatch):
    """A pattern the construction-time probes do not catch (they cannot know every text): only the bound on
    evaluation stands between it and a hang."""
    monkeypatch.setattr(patterns, "_probes", lambda pattern: [])
    patterns.compile_pattern.cache_clear()
    yield
    patterns.compile_pattern.cache_clear()


def _explanation(cond: dict) -> dict:
    return {"schema": 2, "layer": 0, "index": 3, "modes": [{"label": "x", "conditions": [cond]}]}


@pytest.mark.parametrize("kind", ["preceding_regex", "token_regex"])
def test_catastrophic_pattern_in_a_file_is_a_named_error_at_once(tmp_path, kind):
    path = tmp_path / "expl.jsonl"
    path.write_text(json.dumps(_explanation({"kind": kind, "pattern": BAD})) + "\n")
    t0 = time.monotonic()
    with pytest.raises(ExplanationError) as info:
        read_explanations(path)
    assert time.monotonic() - t0 < 3.0
    msg = str(info.value)
    assert repr(BAD) in msg
    assert "too slow" in msg
    assert msg.startswith("expl.jsonl:1.modes[0].conditions[0].pattern")


def test_preceding_regex_over_a_long_window_stops_with_the_pattern_named(probes_miss):
    cond = PrecedingRegex(BAD, window=32)  # accepted: the probes are off
    vocab = Vocab.from_strings(["!", "aaaa", " b"])
    ids = torch.tensor([0] + [1, 2] * 40)  # "!" then 80 tokens of text without another "!"
    seg = torch.zeros_like(ids)
    t0 = time.monotonic()
    with pytest.raises(ExplanationError) as info:
        ConditionEvaluator(vocab).evaluate(cond, ids, seg)
    assert time.monotonic() - t0 < 3.0  # one search's bound (0.25 s), not the 2**100 steps of backtracking
    assert repr(BAD) in str(info.value)
    assert "too slow to evaluate" in str(info.value)


def test_all_searches_of_one_evaluation_share_one_budget(monkeypatch):
    monkeypatch.setattr(patterns, "BUDGET_BASE_S", 0.0)
    monkeypatch.setattr(patterns, "BUDGET_PER_SEARCH_S", 1e-9)
    vocab = Vocab.from_strings([f"w{i}" for i in range(50)])
    ids = torch.arange(50)
    with pytest.raises(ExplanationError, match="together"):
        ConditionEvaluator(vocab).evaluate(PrecedingRegex(r"w1\d", window=4), ids, torch.zeros_like(ids))


ORDINARY = [r"^\d+$", r"ing$", r"^[A-Z]", r"(?:re|un)\w+", r"^(january|february|march)$", r"\W", r"^.{6,}$",
            r"e{2}", r"^[^aeiou]+$", r"\bth", r"[\W_]", r"^\w+\B", r"i", r"\s|\S{8}"]


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_ordinary_token_patterns_select_what_re_selects(minilm, case_sensitive):
    base = Vocab.from_tokenizer(minilm.tokenizer).pieces  # uncased: add cased and Turkish pieces
    vocab = Vocab(pieces=base + [p.upper() for p in base[2000:6000]] + ["ılık", "İstanbul", "sıcak"])
    ev = ConditionEvaluator(vocab)
    keys = vocab.keys(True)
    flags = 0 if case_sensitive else re.IGNORECASE
    for p in ORDINARY:
        want = np.array([re.search(p, k, flags) is not None for k in keys])
        got = ev.vocab_mask(TokenRegex(p, case_sensitive))
        assert want.any(), p
        assert (got == want).all(), (p, np.flatnonzero(got != want)[:5])


def test_ordinary_preceding_patterns_select_what_re_selects(minilm):
    vocab = Vocab.from_tokenizer(minilm.tokenizer)
    text = ("def f(x): return x + 1\nclass A: pass\nThe value of the function is returned, then it runs! "
            "And again: def g(): return None.")
    ids = torch.tensor(minilm.tokenizer(text, add_special_tokens=False)["input_ids"])
    seg = (torch.arange(len(ids)) >= len(ids) // 2).long()
    ev = ConditionEvaluator(vocab)
    pieces, ids_l, seg_l = vocab.pieces, ids.tolist(), seg.tolist()
    for p, window in [(r"def |class ", 12), (r"return\s*$", 3), (r"[!?]", 8), (r"\(\w*$", 4)]:
        got = ev.evaluate(PrecedingRegex(p, window=window), ids, seg).tolist()
        want = []
        for t in range(len(ids_l)):
            lo = max(t - window, 0)
            while seg_l[lo] != seg_l[t]:
                lo += 1
            w = "".join(pieces[i] for i in ids_l[lo:t])
            want.append(bool(w) and re.search(p, w, re.IGNORECASE) is not None)
        assert got == want, p
        assert any(want), p


def test_invalid_regex_is_still_named():
    with pytest.raises(ExplanationError, match=r"conditions\[0\]\.pattern '\(' is not a valid regex"):
        condition_from_dict({"kind": "token_regex", "pattern": "("}, "conditions[0]")


def _llm_proposing(pattern: str):
    """A scripted model whose decomposition proposes ``pattern`` besides a good condition."""

    def respond(req) -> Reply:
        system, user = req.body["messages"][0]["content"], req.body["messages"][1]["content"]
        if "What do the marked tokens have in common" in user:
            out = {"hypotheses": ["the words return and value"]}
        elif "testable conditions" in system:
            out = {"components": [{"hypothesis": "exclaimed", "condition": {"kind": "preceding_regex",
                                                                              "pattern": pattern}},
                                  {"hypothesis": "return", "condition": {"kind": "token",
                                                                         "tokens": ["return", "value"]}}]}
        elif "one group of tokens" in system:
            out = {"label": "return or value", "description": "the words return or value"}
        else:
            out = {"modes": [{"label": "exclaimed", "description": "text after an exclamation mark",
                              "conditions": [{"kind": "preceding_regex", "pattern": pattern}]}], "probes": []}
        return Reply(json=chat_body(json.dumps(out)))

    return respond


@pytest.mark.parametrize("probes", ["on", "miss"])
def test_llm_proposed_slow_pattern_is_rejected_like_an_invalid_condition(planted, request, probes):  # noqa: F811
    if probes == "miss":
        request.getfixturevalue("probes_miss")
    evidence, ev = planted
    slow = r"(.|.)*[!?]"  # explodes on any text without "!" or "?" after the start

    async def go():
        cfg = LLMConfig(base_url=server.url, model="scripted", timeout_s=5, backoff_base_s=0.01)
        async with LLMClient(cfg) as client:
            return await LLMNeuronScope(evidence, client, evaluator=ev, cfg=OfflineConfig(rounds=1)).arun()

    t0 = time.monotonic()
    with ScriptedServer(default=_llm_proposing(slow)) as server:
        res = asyncio.run(go())
    assert time.monotonic() - t0 < 120
    errors = [e for t in res.transcript if t["role"] in ("decomposition errors", "refinement errors")
              for e in t["errors"]]
    assert errors
    assert all(repr(slow) in e and "too slow" in e for e in errors)
    conds = [c for m in res.explanation.modes for c in m.conditions]
    assert conds
    assert all(getattr(c, "pattern", None) != slow for c in conds)
