"""Scoring: Pearson against numpy, batched condition scores against a per-condition loop, planted neurons,
evidence from a real MiniLM store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronscope.activations import activation_source
from neuronscope.explanations import (
    AllOf,
    ConditionEvaluator,
    Explanation,
    Mode,
    PrecedingRegex,
    PrevTokenIn,
    TokenIn,
    TokenRegex,
    Vocab,
)
from neuronscope.scoring import (
    ExecSimulator,
    NeuronEvidence,
    Window,
    WindowBatch,
    pearson_ref,
    score_conditions,
    score_explanations,
)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def test_pearson_ref_matches_corrcoef():
    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 2.0, 997).astype(np.float32)
    x = rng.normal(size=(7, 997)).astype(np.float32)
    x[1] = 2.5 * y - 1  # perfect
    x[2] = 4.0  # constant row: defined as 0
    x[3] = rng.random(997) < 0.1  # binary
    got = pearson_ref(torch.from_numpy(x), torch.from_numpy(y), chunk=100).numpy()
    want = [_corr(row, y) for row in x]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[1] == pytest.approx(1.0, abs=1e-6)
    assert got[2] == 0.0
    ys = np.stack([y, -y, np.zeros_like(y)])
    many = pearson_ref(torch.from_numpy(x), torch.from_numpy(ys)).numpy()
    np.testing.assert_allclose(many, [[_corr(a, b) for b in ys] for a in x], atol=1e-6)
    bools = torch.from_numpy(x[3].astype(bool))[None]
    assert pearson_ref(bools, torch.from_numpy(y)).item() == pytest.approx(want[3], abs=1e-6)


def _random_windows(rng, vocab_size: int, n: int = 40) -> list[Window]:
    out = []
    for i in range(n):
        length = int(rng.integers(1, 30))
        ids = rng.zipf(1.3, size=length) % vocab_size
        acts = rng.normal(size=length).astype(np.float32)
        kind = ["top", "random", "quantile"][i % 3]
        out.append(Window(ids=ids, acts=acts, kind=kind, focus=int(rng.integers(length)) if kind == "top" else -1,
                          left=rng.zipf(1.3, size=int(rng.integers(0, 6))) % vocab_size))
    return out


def test_score_conditions_equals_per_condition_loop():
    rng = np.random.default_rng(1)
    strings = [f"w{i}" for i in range(50)] + ["The", "the", "1999", "42", "(", "running"]
    vocab = Vocab.from_strings(strings)
    windows = _random_windows(rng, len(vocab))
    batch = WindowBatch.build(windows)
    ev = ConditionEvaluator(vocab)
    conds = [TokenIn((s,)) for s in strings] + [
        TokenIn(("w1", "w2", "w3")), TokenRegex(r"^\d+$"), TokenRegex("^w[0-4]$"),
        PrevTokenIn(("w1", "w5"), 1), PrevTokenIn(("w2",), 3), PrevTokenIn(("w0",), 32),
        PrecedingRegex("w1w", 3), AllOf((TokenIn(("w1", "w2")), PrevTokenIn(("w1", "w3"), 1))),
        TokenIn(("never-seen",)),
    ]
    sc = score_conditions(ev, conds, batch, chunk=3)
    acts = batch.acts.numpy()
    top_focus = (batch.focus & batch.kind_mask("top")).numpy()
    for i, c in enumerate(conds):
        m = ev.evaluate(c, batch.ids, batch.seg)[batch.scored].numpy()
        assert sc.fires[i] == m.sum(), c.describe()
        assert sc.focus_hits[i] == (m & top_focus).sum()
        assert sc.act_sum[i] == pytest.approx(acts[m].astype(np.float64).sum(), abs=1e-9)
        assert sc.r[i] == pytest.approx(_corr(m, acts), abs=1e-9), c.describe()
    assert sc.fires[-1] == 0
    assert sc.r[-1] == 0.0


def _planted(n_docs: int = 60):
    """A neuron planted on real pydoc text: mode A on 'return'/'value', mode B on a lowercase word after 'the'."""
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer

    from neuronscope.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    vocab = Vocab.from_tokenizer(tok)
    ev = ConditionEvaluator(vocab)
    mode_a = Mode("return", "the words return or value", [TokenIn(("return", "value"))], strength=4.0)
    mode_b = Mode("after the", "a lower-case word right after 'the'",
                  [AllOf((TokenRegex("^[a-z]+$"), PrevTokenIn(("the",), 1)))], strength=2.0)
    rng = np.random.default_rng(3)
    windows = []
    for i, key in enumerate(sorted(topics)[:n_docs]):
        ids = np.asarray(tok(topics[key][:400], add_special_tokens=False)["input_ids"], dtype=np.int64)
        t_ids, seg = torch.from_numpy(ids), torch.zeros(len(ids), dtype=torch.int64)
        acts = (4.0 * ev.evaluate_mode(mode_a, t_ids, seg).numpy() + 2.0 * ev.evaluate_mode(mode_b, t_ids, seg).numpy()
                + rng.normal(0, 0.05, len(ids)))
        windows.append(Window(ids=ids, acts=acts, kind="top" if i % 3 == 0 else "random",
                              focus=int(np.argmax(acts)) if i % 3 == 0 else -1))
    evidence = NeuronEvidence(0, 0, vocab, train=windows[::2], heldout=windows[1::2])
    return evidence, mode_a, mode_b, ev


def test_planted_neuron_perfect_and_wrong_explanations():
    evidence, mode_a, mode_b, ev = _planted()
    perfect = Explanation(0, 0, [mode_a, mode_b], method="test")
    half = Explanation(0, 0, [Mode("return", conditions=mode_a.conditions, strength=4.0)])
    wrong = Explanation(0, 0, [Mode("commas", conditions=[TokenIn((",",))], strength=1.0)])
    res = score_explanations(evidence, [perfect, half, wrong], ExecSimulator(evidence.vocab, ev))
    assert res[0].score > 0.99
    assert 0.3 < res[1].score < res[0].score
    assert abs(res[2].score) < 0.1
    assert len(res[0].mode_scores) == 2
    assert all(0 < s < res[0].score for s in res[0].mode_scores)
    assert perfect.scores["score"] == res[0].score
    assert perfect.modes[0].scores["score"] == res[0].mode_scores[0]

    # Independent recomputation of the whole score and the coverage from the held-out windows.
    preds, trues, focus = [], [], []
    for w in evidence.heldout:
        ids, seg = torch.from_numpy(w.ids), torch.zeros(len(w.ids), dtype=torch.int64)
        a = ev.evaluate_mode(mode_a, ids, seg).numpy()
        b = ev.evaluate_mode(mode_b, ids, seg).numpy()
        preds.append(np.where(a, 4.0, np.where(b, 2.0, 0.0)))
        trues.append(w.acts)
        f = np.zeros(len(w.ids), bool)
        if w.kind == "top":
            f[w.focus] = True
        focus.append((f & (a | b)).sum() / max(f.sum(), 1) if f.any() else np.nan)
    assert res[0].coverage == pytest.approx(np.nanmean(focus))
    assert res[0].score == pytest.approx(_corr(np.concatenate(preds), np.concatenate(trues)), abs=1e-6)


def test_store_evidence_windows_and_split(minilm_store):
    from neuronscope.scoring import store_evidence

    acts = activation_source(minilm_store)
    ev1 = store_evidence(minilm_store, acts, 1, [3, 700], seed=5)
    ev2 = store_evidence(minilm_store, acts, 1, [700], seed=5)
    st = minilm_store.stats(1)
    for e in ev1:
        tops = [w for w in e.train + e.heldout if w.kind == "top"]
        assert len(tops) == 16
        held_top = [w for w in e.heldout if w.kind == "top"]
        assert [w.start + w.focus for w in held_top] == st.topk_positions[e.index][1::2].tolist()
        for w in tops:
            # recomputed activation at the focus token equals the mined top-k value
            p = w.start + w.focus
            v = float(st.topk_values[e.index][st.topk_positions[e.index] == p][0])
            assert w.acts[w.focus] == pytest.approx(v, rel=1e-5, abs=1e-6)
        n_rand = sum(w.kind == "random" for w in e.heldout)
        assert n_rand == len(held_top)
        for w in e.train + e.heldout:
            assert np.array_equal(w.ids, minilm_store.tokens.tokens[w.start : w.start + len(w.ids)])
            assert 0 <= w.start < minilm_store.n_tokens_seen
        assert e.stats["max"] == pytest.approx(float(st.max[e.index]))
    # deterministic, and independent of which other neurons were asked for
    a, b = ev1[1], ev2[0]
    assert [w.start for w in a.heldout] == [w.start for w in b.heldout]
    np.testing.assert_array_equal(np.concatenate([w.acts for w in a.heldout]),
                                  np.concatenate([w.acts for w in b.heldout]))
    acts = activation_source(minilm_store).at(1, [700], np.arange(a.heldout[0].start, a.heldout[0].start + 5))[:, 0]
    np.testing.assert_allclose(a.heldout[0].acts[:5], acts, rtol=1e-6)


def test_combine_modes_takes_the_largest_magnitude_per_token_against_a_loop():
    from neuronscope.scoring.simulate import combine_modes

    rng = np.random.default_rng(5)
    preds = rng.normal(size=(5, 400)).round(1).astype(np.float32)  # rounded: many exact ties, some ±
    preds[:, :20] = 0.0
    preds[0, 20], preds[3, 20] = -2.0, 2.0  # a positive and a negative tie: the positive one
    preds[1, 21], preds[2, 21] = 1.5, -1.5
    want = np.zeros(preds.shape[1], np.float32)
    for t in range(preds.shape[1]):
        col = preds[:, t]
        big = np.abs(col).max()
        want[t] = big if (col == big).any() else -big
    np.testing.assert_array_equal(combine_modes(torch.from_numpy(preds)).numpy(), want)
    np.testing.assert_array_equal(combine_modes(torch.from_numpy(preds[:1])).numpy(), preds[0])
    assert combine_modes(torch.zeros((0, 7))).shape == (7,)
