"""Unlisted words read by their nearest listed words (``scoring/similar.py``, ``Mode.similar``): the fill against
a numpy brute force over MiniLM's static word vectors, the simulator's choice of which tokens to fill, the
schema's validation, and the agent's cross-validated decision (on when the words seen once follow meaning,
off when they contradict it)."""

from __future__ import annotations

import numpy as np
import pytest

from hand_built import make_agent, minilm_vocab, window
from neuronscope.agents.background import similar_words
from neuronscope.agents.base import AgentConfig
from neuronscope.agents.workspace import build_mode
from neuronscope.embedding import static_word_vectors
from neuronscope.errors import ExplanationError
from neuronscope.explanations import AllOf, Explanation, Mode, PrevTokenIn, TokenIn
from neuronscope.scoring import WindowBatch
from neuronscope.scoring.similar import similar_fill
from neuronscope.scoring.simulate import ExecSimulator


@pytest.fixture(scope="module")
def vocab():
    return minilm_vocab()


def _brute(table, levels, query, k, exclude=False):
    t = static_word_vectors(table).numpy().astype(np.float64)
    out = []
    for q in query:
        v = static_word_vectors([q]).numpy()[0].astype(np.float64)
        sims = [(float(v @ t[j]), j) for j in range(len(table)) if not (exclude and table[j] == q)]
        top = sorted(sims, reverse=True)[:k]
        w = np.array([max(s, 0.0) for s, _ in top])
        out.append(float((w * np.array([levels[j] for _, j in top])).sum() / w.sum()) if w.sum() > 0 else 0.0)
    return np.array(out)


def test_similar_fill_is_the_cosine_weighted_mean_of_the_k_nearest_listed_words():
    table = ["error", "exception", "warning", "table", "chair", "green", "blue", "seven"]
    levels = np.array([2.0, 1.8, 1.5, 0.1, 0.0, 0.2, 0.3, -0.1])
    query = ["failure", "sofa", "red", "exception"]
    for k in (1, 3, 8):
        assert np.allclose(similar_fill(table, levels, query, k), _brute(table, levels, query, k), atol=1e-6)
    assert np.allclose(similar_fill(table, levels, query, 3, exclude_self=True),
                       _brute(table, levels, query, 3, exclude=True), atol=1e-6)
    got = similar_fill(table, levels, ["failure", "sofa"], 3)
    assert got[0] > 1.0 > got[1]  # a fault word reads like the error words, furniture like the furniture


def test_the_simulator_fills_only_unlisted_words_where_nothing_fires(vocab):
    bg = Mode("background", conditions=[TokenIn(("error",)), TokenIn(("exception",)), TokenIn(("table",)),
                                        TokenIn(("chair",))], condition_strengths=[2.0, 1.8, 0.1, 0.0],
              kind="background", similar=2)
    meaning = Mode("m", conditions=[AllOf((TokenIn(("warning",)), PrevTokenIn(("a",), 1))), TokenIn(("x",))],
                   condition_strengths=[3.0, 1.0])
    e = Explanation(0, 0, [meaning, bg])
    words = ["failure", "error", "warning", "sofa", "x", "a", "warning"]
    batch = WindowBatch.build([window(vocab, words, [0] * len(words))])
    got = ExecSimulator(vocab).simulate([e], batch)[0].whole.numpy()
    # the listed words: the meaning's single-word condition "x" too (not its word in context)
    table, levels = ["x", "error", "exception", "table", "chair"], [1.0, 2.0, 1.8, 0.1, 0.0]
    fill = _brute(table, levels, ["failure", "sofa", "a"], 2)
    # failure, sofa, a: unlisted and silent (filled); error: listed; both "warning": named by a condition (even
    # where its context fails); x: a meaning fires
    want = np.array([fill[0], 2.0, 0.0, fill[1], 1.0, fill[2], 3.0])
    assert np.allclose(got, want, atol=1e-5)
    off = Explanation(0, 0, [meaning, Mode(**{**bg.__dict__, "similar": 0})])
    assert ExecSimulator(vocab).simulate([off], batch)[0].whole.numpy()[0] == 0.0


def test_similar_is_validated_and_round_trips():
    bg = Mode("background", conditions=[TokenIn(("a",))], kind="background", similar=20)
    back = Explanation.from_dict(Explanation(0, 0, [bg]).to_dict())
    assert back.modes[0].similar == 20
    with pytest.raises(ExplanationError, match="similar"):
        Mode("m", conditions=[TokenIn(("a",))], similar=5)
    d = Explanation(0, 0, [bg]).to_dict()
    for bad in (101, -1, "many"):
        d["modes"][0]["similar"] = bad
        with pytest.raises(ExplanationError, match="similar"):
            Explanation.from_dict(d)
    d["modes"][0].update(similar=3, kind="mode")
    with pytest.raises(ExplanationError, match="similar"):
        Explanation.from_dict(d)


_FAULTS = ["failure", "fault", "bug", "crash", "mistake", "problem", "defect", "flaw"]
_PLAIN = ["table", "chair", "sofa", "desk", "bed", "shelf", "lamp", "cupboard"]


def _neuron(vocab, once_fault: float, once_plain: float):
    """Listed words seen in many windows (error words 2.0, furniture 0.0) and words seen in one window each."""
    wins = []
    for _i in range(12):
        wins.append(window(vocab, ["the", "error", "and", "exception", "on", "warning"], [0, 2.0, 0, 2.0, 0, 2.0]))
        wins.append(window(vocab, ["the", "room", "and", "floor", "on", "wall"], [0, 0, 0, 0, 0, 0], kind="random"))
    for f, p in zip(_FAULTS, _PLAIN, strict=True):
        wins.append(window(vocab, ["the", f, "and", p], [0, once_fault, 0, once_plain], kind="random"))
    agent = make_agent(vocab, wins)
    agent.hypothesis()
    ws = agent.ws
    words = sorted({w for ws_ in (["the", "error", "and", "exception", "on", "warning", "room", "floor", "wall"],
                                  _FAULTS, _PLAIN) for w in ws_})
    return ws, build_mode(ws, [TokenIn((w,)) for w in words], kind="background")


def test_the_agent_reads_unlisted_words_by_meaning_only_when_the_words_seen_once_follow_it(vocab):
    cfg = AgentConfig()
    ws, bg = _neuron(vocab, once_fault=2.0, once_plain=0.0)
    why = similar_words(ws, cfg, [], bg)
    assert bg.similar == cfg.similar_words, why
    assert why["train_score_with"] > why["train_score_without"]
    # The fault words seen once are silent although the error words nearest to them fire: the fill is wrong there.
    ws, bg = _neuron(vocab, once_fault=0.0, once_plain=0.0)
    why = similar_words(ws, cfg, [], bg)
    assert bg.similar == 0, why
    ws, bg = _neuron(vocab, once_fault=2.0, once_plain=0.0)
    assert similar_words(ws, AgentConfig(similar_words=0), [], bg) == {"similar": 0}
    assert bg.similar == 0
