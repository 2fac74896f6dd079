"""The train score's cross-validation (leave one window out) against a brute-force loop, and the backward
elimination of context atoms (``agents.pruning``) on hand-built neurons whose answer is worked out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hand_built import make_agent, minilm_vocab, window
from neuronscope.agents.proposals import restrict_context
from neuronscope.agents.pruning import prune_atoms
from neuronscope.agents.workspace import build_mode
from neuronscope.explanations import Mode, PrevTokenIn, TokenIn, Vocab
from neuronscope.scoring import Window
from neuronscope.scoring.corr import pearson_ref


@pytest.fixture(scope="module")
def vocab():
    return minilm_vocab()


def test_atom_rows_cv_is_leave_one_window_out(vocab):
    rng = np.random.default_rng(0)
    words = ["list", "the", "of", "a", "dict", "value"]
    wins = []
    for _ in range(9):
        ws_ = list(rng.choice(words, size=int(rng.integers(3, 8))))
        wins.append(window(vocab, ws_, rng.normal(size=len(ws_)).round(2).tolist()))
    agent = make_agent(vocab, wins)
    ws = agent.ws
    conds = [TokenIn(("list",)), TokenIn(("the", "of")), PrevTokenIn(("a",), 1), TokenIn(("value",))]
    got = ws.atom_rows_cv(conds).numpy()
    # brute force: for every token, refit each condition's mean on the other windows only
    masks = ws.masks(conds).numpy()
    y = ws.batch.acts.numpy()
    win = ws.batch.window.numpy()
    want = np.zeros_like(got)
    for c in range(len(conds)):
        for t in range(len(y)):
            if not masks[c, t]:
                continue
            other = masks[c] & (win != win[t])
            want[c, t] = y[other].mean() if other.any() else 0.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the score is the Pearson r of the strongest cross-validated level per token
    pred = want[np.abs(want).argmax(0), np.arange(len(y))]
    assert ws.score([Mode("", conditions=conds)]) == pytest.approx(float(np.corrcoef(pred, y)[0, 1]), abs=1e-5)
    # the rows are cached per atom: asked again, in another order and mixed with a new atom, the same numbers
    again = ws.atom_rows_cv([conds[2], TokenIn(("dict",)), conds[0]]).numpy()
    np.testing.assert_allclose(again[[0, 2]], want[[2, 0]], rtol=1e-5, atol=1e-6)
    # ``where`` scores on a subset of the tokens (the earning rule's stored windows); the levels stay fitted on all
    sub = win % 3 != 0
    got_sub = ws.score([Mode("", conditions=conds)], torch.from_numpy(sub))
    assert got_sub == pytest.approx(float(np.corrcoef(pred[sub], y[sub])[0, 1]), abs=1e-5)
    # a rebuilt batch (probes or the survey joined) recomputes them
    ws.windows.append(window(vocab, ["list", "list"], [5.0, 5.0]))
    ws.rebuild()
    assert float(ws.atom_rows_cv([conds[0]]).max()) > float(want[0].max())


def _dash_neuron(vocab: Vocab) -> list[Window]:
    """A neuron that fires on "-" (2.0) and weakly on "+" (0.5), nothing else. "x" precedes the dashes in the
    top windows, so "after x" is precise there; but "x" also precedes many silent tokens elsewhere."""
    wins = [window(vocab, ["x", "-", "-", "the", "+"], [0.0, 2.0, 2.0, 0.0, 0.5]) for _ in range(6)]
    wins += [window(vocab, ["x", "of", "x", "a", "x", "is"], [0.0] * 6, kind="random") for _ in range(6)]
    wins += [window(vocab, ["the", "+", "of"], [0.0, 0.5, 0.0], kind="random") for _ in range(4)]
    return wins


def test_prune_drops_a_broad_context_atom_that_overrides_token_levels(vocab):
    agent = make_agent(vocab, _dash_neuron(vocab))
    ws = agent.ws
    bad = PrevTokenIn(("x",), 1)
    mode = build_mode(ws, [TokenIn(("-",)), TokenIn(("+",)), bad])
    before = ws.score([mode])
    modes, _bg, log = prune_atoms(ws, [mode], None)
    assert len(log) == 1
    assert "token[-1]" in log[0]
    assert bad not in modes[0].conditions
    assert {c for c in modes[0].conditions} == {TokenIn(("-",)), TokenIn(("+",))}
    after = ws.score(modes)
    assert after > before + 0.05
    y = ws.batch.acts
    assert after == pytest.approx(float(pearson_ref(ws.predict_cv(modes)[None], y)[0]))


def test_prune_keeps_a_context_the_neuron_follows(vocab):
    """"value" fires (2.0) only right after "return" and is silent elsewhere: the context atom is the
    explanation, and removing it (leaving the plain token) must cost score, so pruning keeps it."""
    wins = [window(vocab, ["return", "value", "the"], [0.0, 2.0, 0.0]) for _ in range(6)]
    wins += [window(vocab, ["a", "value", "of"], [0.0, 0.0, 0.0], kind="random") for _ in range(6)]
    agent = make_agent(vocab, wins)
    ws = agent.ws
    from neuronscope.explanations.model import AllOf

    ctx = AllOf((TokenIn(("value",)), PrevTokenIn(("return",), 1)))
    mode = build_mode(ws, [ctx])
    modes, _, log = prune_atoms(ws, [mode], None)
    assert log == []
    assert modes == [mode]
    # with the plain token beside it, removing the context would cost score: kept, and the plain token too
    both = build_mode(ws, [ctx, TokenIn(("value",))])
    modes, _, log = prune_atoms(ws, [both], None)
    assert ctx in modes[0].conditions


def test_restrict_context_needs_contexts_seen_in_both_halves(vocab):
    """"in" is imprecise (silent in random windows). Before its activating occurrences stand "given" (in
    windows of both halves) and "point" (one window only): only "given" may enter the context set."""
    wins = []
    for k in range(6):
        prev = "point" if k == 2 else "given"
        wins.append(window(vocab, [prev, "in", "the"], [0.0, 2.0, 0.0]))
    wins += [window(vocab, ["a", "in", "of"], [0.0, 0.0, 0.0], kind="random") for _ in range(6)]
    agent = make_agent(vocab, wins)
    ws = agent.ws
    active = ws.batch.acts >= ws.threshold
    props = restrict_context(agent, [build_mode(ws, [TokenIn(("in",))])], active)
    assert len(props) == 1
    ctx = props[0][1][0].conditions[0]
    assert ctx.conditions[1] == PrevTokenIn(("given",), 1)
    assert torch.equal(ws.fold, (ws.batch.window % 2).to(torch.bool))
