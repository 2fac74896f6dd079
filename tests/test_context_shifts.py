"""The context term (``agents/context_shifts``, mode kind ``context``) and the ``next_token`` condition: the
simulator adds shifts on top of the strongest mode (hand-computed), the train workspace agrees with it, the
greedy fit recovers planted neighbour effects and finds none in noise, and the schema round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hand_built import make_agent, minilm_vocab, window
from neuronscope.agents.context_shifts import apply_shifts, context_term, fit_shifts, neighbour_keys, vocab_keys
from neuronscope.errors import ExplanationError
from neuronscope.explanations import ConditionEvaluator, Explanation, Mode, PrevTokenIn, TokenIn
from neuronscope.explanations.model import NextTokenIn
from neuronscope.scoring import WindowBatch
from neuronscope.scoring.simulate import ExecSimulator


@pytest.fixture(scope="module")
def vocab():
    return minilm_vocab()


def test_next_token_matches_a_brute_force_scan_and_never_crosses_a_segment(vocab):
    rng = np.random.default_rng(0)
    words = ["the", "(", "x", "def", "value", ")"]
    ids_of = {w: int(vocab.ids_in([w])[0]) for w in words}
    stream = rng.choice([ids_of[w] for w in words], 400)
    seg = np.repeat(np.arange(40), 10)
    got = ConditionEvaluator(vocab).evaluate(NextTokenIn(("(", "def")), torch.from_numpy(stream),
                                             torch.from_numpy(seg)).numpy()
    want = np.array([t + 1 < len(stream) and seg[t + 1] == seg[t] and stream[t + 1] in (ids_of["("], ids_of["def"])
                     for t in range(len(stream))])
    assert np.array_equal(got, want)
    assert not got[9::10].any()  # a segment's last token has no next token


def _explanation() -> Explanation:
    return Explanation(0, 0, [
        Mode("m", conditions=[TokenIn(("x",)), TokenIn(("value",))], condition_strengths=[2.0, 1.0]),
        Mode("background", conditions=[TokenIn(("the",))], condition_strengths=[0.5], kind="background"),
        Mode("context", conditions=[PrevTokenIn(("def",), 1), NextTokenIn(("(",))],
             condition_strengths=[0.3, -0.2], kind="context"),
    ])


def test_the_context_term_adds_its_shifts_to_the_strongest_mode(vocab):
    w = window(vocab, ["def", "x", "(", "the", "value", "def", "the", "(", "x"], [0] * 9)
    batch = WindowBatch.build([w])
    e = _explanation()
    got = ExecSimulator(vocab).simulate([e], batch)[0].whole.numpy()
    # by hand: def | x after def, before ( | ( | the | value | def | the after def, before ( | ( | x (last)
    want = np.array([0.0, 2.0 + 0.3 - 0.2, 0.0, 0.5, 1.0, 0.0, 0.5 + 0.3 - 0.2, 0.0, 2.0], np.float32)
    assert np.allclose(got, want, atol=1e-6)
    agent = make_agent(vocab, [w])
    assert np.allclose(agent.ws.predict(e.modes).numpy(), want, atol=1e-6)  # the train workspace agrees
    assert [m.label for m in e.meanings] == ["m"]  # neither the background nor the context term is a meaning


def test_schema_4_round_trips_the_context_term_and_reads_schema_3():
    e = _explanation()
    d = e.to_dict()
    assert d["schema"] == 4
    back = Explanation.from_dict(d)
    assert back.modes[2].kind == "context"
    assert back.modes[2].conditions == e.modes[2].conditions
    assert back.modes[2].strengths == pytest.approx([0.3, -0.2])
    old = {**d, "schema": 3, "modes": d["modes"][:2]}
    assert len(Explanation.from_dict(old).modes) == 2
    bad = {**d, "modes": [{**d["modes"][2], "kind": "shift"}]}
    with pytest.raises(ExplanationError, match="kind"):
        Explanation.from_dict(bad)
    with pytest.raises(ExplanationError, match="tokens"):
        Explanation.from_dict({**d, "modes": [{"label": "a", "conditions": [{"kind": "next_token"}]}]})


def _planted(rng, n_win=120, length=16, n_key=30, effects=((-1, 3, 0.8), (1, 7, -0.5)), noise=0.15):
    """Windows of random keys; y = level[key] + the planted neighbour effects + noise. Returns the arrays
    fit_shifts takes and the true level of each token."""
    keys = rng.integers(0, n_key, (n_win, length))
    level = rng.normal(0, 1, n_key)
    prev = np.concatenate([np.r_[-1, k[:-1]] for k in keys])
    nxt = np.concatenate([np.r_[k[1:], -1] for k in keys])
    tok = keys.reshape(-1)
    y = level[tok] + rng.normal(0, noise, tok.size)
    for side, key, v in effects:
        y += v * ((prev if side < 0 else nxt) == key)
    win = np.repeat(np.arange(n_win), length)
    return y, level[tok], prev, nxt, win


def test_fit_shifts_recovers_planted_neighbour_effects_and_nothing_else():
    y, base, prev, nxt, win = _planted(np.random.default_rng(1))
    shifts = fit_shifts(y, base, prev, nxt, win, max_shifts=12, min_gain=0.002)
    got = {(s.side, s.key): s.shift for s in shifts}
    assert set(got) == {(-1, 3), (1, 7)}, got
    assert got[(-1, 3)] == pytest.approx(0.8, abs=0.05)
    assert got[(1, 7)] == pytest.approx(-0.5, abs=0.05)
    # applying them removes the planted part of the residual
    resid = y - base - apply_shifts(shifts, prev, nxt)
    assert resid.std() < 0.17


def test_fit_shifts_finds_no_shift_in_noise_and_ignores_a_single_window_neighbour():
    y, base, prev, nxt, win = _planted(np.random.default_rng(2), effects=())
    assert fit_shifts(y, base, prev, nxt, win, max_shifts=12, min_gain=0.002) == []
    # a neighbour that occurs (often) in one window only, with a large residual there: nothing to cross-validate
    prev = prev.copy()
    one = np.flatnonzero(win == 5)[1:]
    prev[one] = 99
    y = y.copy()
    y[one] += 3.0
    assert all(s.key != 99 for s in fit_shifts(y, base, prev, nxt, win, max_shifts=12, min_gain=0.002))


def test_the_agent_names_the_neighbour_that_raises_every_token_after_it(vocab):
    # "value" 1.0 everywhere, "x" 2.0; either one right after "def" 0.8 higher: a neighbour effect, not a word.
    rng = np.random.default_rng(3)
    wins = []
    for i in range(40):
        words = list(rng.choice(["value", "x", "the", "list", "of"], 10))
        words[3] = "def" if i % 2 == 0 else "the"
        acts = [{"value": 1.0, "x": 2.0}.get(w, 0.0) for w in words]
        acts = [a + (0.8 if j > 0 and words[j - 1] == "def" else 0.0) + float(rng.normal(0, 0.05))
                for j, a in enumerate(acts)]
        wins.append(window(vocab, words, acts, kind="top" if i < 20 else "random"))
    agent = make_agent(vocab, wins)
    agent.hypothesis()
    level = Mode("m", conditions=[TokenIn(("x",)), TokenIn(("value",))], condition_strengths=[2.0, 1.0])
    term, why = context_term(agent.ws, agent.cfg, [level])
    assert term is not None, why
    top = max(zip(term.conditions, term.strengths, strict=True), key=lambda cs: abs(cs[1]))
    assert top[0] == PrevTokenIn(("def",), 1)
    assert top[1] == pytest.approx(0.8, abs=0.1)
    assert why["train_score_with"] > why["train_score_without"]
    assert f'right after "def" {top[1]:+.2f}' in term.description  # shrunk toward 0 by 2 of ~20 occurrences


def test_neighbour_keys_are_the_normalised_tokens_of_both_sides(vocab):
    w = window(vocab, ["def", "x", "("], [0, 0, 0])
    b = WindowBatch.build([w])
    prev, nxt = neighbour_keys(vocab, b.ids, b.seg, b.scored)
    uniq, _ = vocab_keys(vocab)
    assert prev[0] == -1
    assert nxt[-1] == -1
    assert uniq[prev[1]] == "def"
    assert uniq[nxt[1]] == "("
