"""Position and negated-context conditions (schema 3), and the offline agent finding a position effect and a
context split on real pydoc documents — each against a brute-force reference computed here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronscope.agents import OfflineConfig, OfflineNeuronScope
from neuronscope.agents.render import INSIDE_PARENS, after_words, describe_condition, label_for
from neuronscope.errors import ExplanationError
from neuronscope.explanations import (
    MAX_OFFSET,
    AllOf,
    ConditionEvaluator,
    Explanation,
    Mode,
    Not,
    Position,
    PrecedingRegex,
    TokenIn,
    Vocab,
    condition_from_dict,
)
from neuronscope.scoring import NeuronEvidence, Window, WindowBatch


@pytest.fixture(scope="module")
def docs():
    """pydoc topics as separate documents: (vocab, evaluator, ids (T,), seg (T,) document of each token, pieces)."""
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer

    from neuronscope.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    vocab = Vocab.from_tokenizer(tok)
    parts = [np.asarray(tok(topics[k][:6000], add_special_tokens=False)["input_ids"], dtype=np.int64)
             for k in sorted(topics)]
    ids = np.concatenate(parts)
    seg = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])
    return vocab, ConditionEvaluator(vocab), ids, seg


def _doc_pos(seg: np.ndarray) -> np.ndarray:
    """Brute force: each token's index in its document."""
    out = np.zeros(len(seg), dtype=np.int64)
    for t in range(1, len(seg)):
        out[t] = out[t - 1] + 1 if seg[t] == seg[t - 1] else 0
    return out


def _inside_parens(ids: np.ndarray, seg: np.ndarray, vocab: Vocab, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: (an unclosed '(' among the ``window`` tokens before t in t's document; whether parentheses
    there nest three deep, which the pattern does not follow)."""
    out = np.zeros(len(ids), dtype=bool)
    deep = np.zeros(len(ids), dtype=bool)
    pieces = [vocab.pieces[i].strip() for i in ids]
    for t in range(len(ids)):
        depth = top = 0
        for s in range(max(0, t - window), t):
            if seg[s] != seg[t]:
                continue
            if pieces[s] == "(":
                depth += 1
                top = max(top, depth)
            elif pieces[s] == ")":
                depth = max(depth - 1, 0)
        out[t], deep[t] = depth > 0, top >= 3
    return out, deep


def test_position_matches_brute_force_on_documents(docs):
    _vocab, ev, ids, seg = docs
    pos = _doc_pos(seg)
    t_ids, t_seg = torch.from_numpy(ids), torch.from_numpy(seg)
    for start, stop in ((0, 1), (0, 8), (3, 12), (0, MAX_OFFSET)):
        got = ev.evaluate(Position(stop, start), t_ids, t_seg).numpy()
        assert np.array_equal(got, (pos >= start) & (pos < stop)), (start, stop)
    tok = TokenIn(("the",))
    both = ev.evaluate(AllOf((tok, Not(Position(8)))), t_ids, t_seg).numpy()
    assert np.array_equal(both, ev.evaluate(tok, t_ids, t_seg).numpy() & (pos >= 8))


def test_windows_with_left_context_give_document_positions(docs):
    """A window carries up to MAX_OFFSET tokens of its document's left context, so position < MAX_OFFSET is
    the document position whether the window starts at the document's start, inside its first 32 tokens,
    or far into it."""
    _vocab, ev, ids, seg = docs
    pos = _doc_pos(seg)
    starts = np.flatnonzero(pos == 0)
    wins, truth = [], []
    for d0 in starts[:40]:
        for shift in (0, 5, 20, 45):
            lo = d0 + shift
            hi = lo + 10
            if hi > len(ids) or seg[hi - 1] != seg[d0]:
                continue
            left_lo = max(d0, lo - MAX_OFFSET)
            wins.append(Window(ids=ids[lo:hi], acts=np.zeros(hi - lo, np.float32), kind="random", start=int(lo),
                               left=ids[left_lo:lo]))
            truth.append(pos[lo:hi])
    batch = WindowBatch.build(wins)
    for cond in (Position(4), Position(24, 6), Position(MAX_OFFSET)):
        got = ev.evaluate(cond, batch.ids, batch.seg)[batch.scored].numpy()
        want = np.concatenate([(p >= cond.start) & (p < cond.stop) for p in truth])
        assert np.array_equal(got, want), cond


def test_not_and_parentheses_match_brute_force(docs):
    vocab, ev, ids, seg = docs
    inside = ev.evaluate(PrecedingRegex(INSIDE_PARENS, MAX_OFFSET), torch.from_numpy(ids), torch.from_numpy(seg))
    want, deep = _inside_parens(ids, seg, vocab, MAX_OFFSET)
    assert 0.02 < want.mean() < 0.5  # pydoc has parentheses, and most text is outside them
    assert np.array_equal(inside.numpy()[~deep], want[~deep])
    assert deep.mean() < 0.01
    outside = ev.evaluate(Not(PrecedingRegex(INSIDE_PARENS, MAX_OFFSET)), torch.from_numpy(ids), torch.from_numpy(seg))
    assert np.array_equal(outside.numpy(), ~inside.numpy())


def test_new_kinds_round_trip_and_validate():
    mode = Mode("m", conditions=[Position(6), AllOf((TokenIn(("x",)), Not(PrecedingRegex(INSIDE_PARENS, 32))))],
                condition_strengths=[2.0, 1.0])
    e = Explanation(0, 1, [mode])
    d = e.to_dict()
    assert d["schema"] == 4
    back = Explanation.from_dict(d)
    assert Explanation.from_dict({**d, "schema": 3}).modes[0].conditions == mode.conditions  # schema 3 reads
    assert back.modes[0].conditions == mode.conditions
    old = {**d, "schema": 2, "modes": [{"label": "a", "conditions": [{"kind": "token", "tokens": ["a"]}]}]}
    assert Explanation.from_dict(old).modes[0].conditions == [TokenIn(("a",))]  # schema 2 still reads
    for bad, where in (({"kind": "position", "stop": 0}, "stop"),
                       ({"kind": "position", "stop": MAX_OFFSET + 1}, "stop"),
                       ({"kind": "position", "stop": 4, "start": 4}, "start"), ({"kind": "position"}, "stop"),
                       ({"kind": "position", "stop": 4, "step": 1}, "step"), ({"kind": "not"}, "condition"),
                       ({"kind": "not", "condition": {"kind": "token"}}, "condition")):
        with pytest.raises(ExplanationError, match=where):
            condition_from_dict(bad)


def test_rendered_phrases_read_as_english():
    assert describe_condition(Position(1)) == "the first token of a document"
    assert label_for([Position(4), Position(12)]) == "the first 12 tokens of a document"
    x = TokenIn(("x", "y"))
    inside, outside = PrecedingRegex(INSIDE_PARENS, 32), Not(PrecedingRegex(INSIDE_PARENS, 32))
    assert label_for([AllOf((x, inside))]) == "x/y inside parentheses"
    assert label_for([AllOf((x, outside))]) == "x/y outside parentheses"
    assert label_for([AllOf((x, inside)), AllOf((x, outside))]) == "x/y"  # graded by context: the words
    after = after_words(["return", "returns"], 3)
    assert describe_condition(AllOf((TokenIn(("value",)), Not(after)))) == \
        'the token "value" not within 3 tokens after "return" or "returns"'


def _evidence(vocab, ids, seg, acts, focus_pool, seed=0) -> NeuronEvidence:
    """Top windows around the strongest tokens of ``focus_pool`` and random windows, each with its document's
    left context, split alternately into train and held-out (as ``store_evidence`` does)."""
    rng = np.random.default_rng(seed)
    pos = _doc_pos(seg)

    def window(p: int, kind: str) -> Window:
        d0 = p - pos[p]
        lo = max(d0, p - 10)
        hi = p + 6
        while hi > len(ids) or seg[hi - 1] != seg[p]:
            hi -= 1
        return Window(ids=ids[lo:hi], acts=acts[lo:hi], kind=kind, focus=p - lo if kind == "top" else -1,
                      start=int(lo), left=ids[max(d0, lo - MAX_OFFSET):lo])

    tops = sorted(rng.choice(focus_pool, min(60, len(focus_pool)), replace=False).tolist(), key=lambda p: -acts[p])
    rand = rng.choice(len(ids), 120, replace=False).tolist()
    wins = [window(p, "top") for p in tops]
    rwins = [window(p, "random") for p in rand]
    return NeuronEvidence(0, 0, vocab, train=wins[0::2] + rwins[0::2], heldout=wins[1::2] + rwins[1::2],
                          stats={"max": float(acts.max())})


def _firing(ev, mode: Mode, ids, seg) -> np.ndarray:
    return ev.evaluate_mode(mode, torch.from_numpy(ids), torch.from_numpy(seg)).numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def test_offline_agent_recovers_a_position_effect(docs):
    """A neuron that fires on the first 10 tokens of every document, falling with position, whatever the
    token: the explanation is one position mode, not the bag of words that open pydoc topics."""
    vocab, ev, ids, seg = docs
    pos = _doc_pos(seg)
    rng = np.random.default_rng(1)
    truth = pos < 10
    acts = np.where(truth, 3.0 * (1 - 0.05 * pos), 0.0) + rng.normal(0, 0.03, len(ids))
    acts = acts.astype(np.float32)
    evidence = _evidence(vocab, ids, seg, acts, np.flatnonzero(pos < 3))
    res = OfflineNeuronScope(evidence, evaluator=ev, cfg=OfflineConfig(rounds=3)).run()
    meanings = res.explanation.meanings
    assert len(meanings) == 1, [m.label for m in meanings]
    m = meanings[0]
    assert any(isinstance(c, Position) for c in m.conditions), m.description
    assert "document" in m.label
    assert m.concept == "start of a document"
    assert _iou(_firing(ev, m, ids, seg), truth) >= 0.6


def test_offline_agent_splits_a_word_by_context(docs):
    """'the' fires at 3.0 inside parentheses and at 1.0 outside: two modes, the same word in two contexts,
    each matching its true firing set (a look-up table of 'the' cannot tell them apart)."""
    vocab, ev, ids, seg = docs
    n = len(ids)
    rng = np.random.default_rng(2)
    the = _firing(ev, Mode("t", conditions=[TokenIn(("the",))]), ids, seg)
    inside = _inside_parens(ids, seg, vocab, MAX_OFFSET)[0]
    acts = (np.where(the & inside, 3.0, 0.0) + np.where(the & ~inside, 1.0, 0.0)
            + rng.normal(0, 0.03, n)).astype(np.float32)
    pool = np.flatnonzero(the & inside)
    evidence = _evidence(vocab, ids, seg, acts, np.concatenate([pool, rng.choice(np.flatnonzero(the & ~inside),
                                                                                  len(pool), replace=False)]))
    res = OfflineNeuronScope(evidence, evaluator=ev, cfg=OfflineConfig(rounds=3)).run()
    meanings = sorted(res.explanation.meanings, key=lambda m: -m.strength)
    assert len(meanings) == 2, [m.label for m in meanings]
    strong, weak = (_firing(ev, m, ids, seg) for m in meanings)
    assert _iou(strong, the & inside) >= 0.8
    assert _iou(weak, the & ~inside) >= 0.8
    assert "inside parentheses" in meanings[0].label
    assert "outside parentheses" in meanings[1].label
