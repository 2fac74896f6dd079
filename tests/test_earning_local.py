"""The earning rule measures a mode's gain where it is at work (the windows in which it fires on activating
tokens): a weak meaning in a few windows keeps its place though it moves the whole train score by less than
the rule's threshold. Hand-built neuron, the gains computed here."""

from __future__ import annotations

import numpy as np
import pytest

from hand_built import make_agent, minilm_vocab, window
from neuronscope.agents import OfflineConfig
from neuronscope.agents.workspace import build_mode
from neuronscope.explanations import TokenIn

FILLER = ["the", "of", "a", "to", "is", "in", "it", "that", "on"]


@pytest.fixture(scope="module")
def vocab():
    return minilm_vocab()


def _neuron(vocab, rng):
    """40 windows where "list" fires at 3.0, 8 where the time words "when"/"after" fire at 0.9 (0.3 of the
    peak, above the 0.2 activating threshold), 30 random windows of filler; filler noise ±0.05."""
    wins = []
    for k in range(48):
        word, level = ("list", 3.0) if k < 40 else (("when", "after")[k % 2], 0.9)
        words = [word, *rng.choice(FILLER, size=9)]
        acts = [level, *rng.normal(0, 0.05, size=9)]
        wins.append(window(vocab, words, acts))
    for _ in range(30):
        wins.append(window(vocab, list(rng.choice(FILLER, size=10)), list(rng.normal(0, 0.05, size=10)), "random"))
    return wins


def test_a_weak_meaning_in_few_windows_earns_its_place(vocab):
    agent = make_agent(vocab, _neuron(vocab, np.random.default_rng(0)))
    active = agent.hypothesis()
    ws, cfg = agent.ws, OfflineConfig()
    strong = build_mode(ws, [TokenIn(("list",))])
    weak = build_mode(ws, [TokenIn(("when",)), TokenIn(("after",))])
    # What the old rule measured, over every train token: less than the threshold, so it would have gone.
    whole = ws.score([strong, weak]) - ws.score([strong])
    assert 0 < whole < cfg.min_mode_gain
    # Where the time words are at work, they are most of what there is to predict.
    where = ws.windows_of(ws.fires(weak) & active)
    assert int(ws.batch.window[where].unique().numel()) == 8
    assert ws.score([strong, weak], where) - ws.score([strong], where) > 0.5
    modes, background = agent.earn([strong, weak], active)
    assert background is None
    assert sorted(m.label for m in modes) == sorted([strong.label, weak.label])


def test_a_mode_that_adds_nothing_where_it_fires_does_not_earn(vocab):
    """A mode that repeats the strong meaning's tokens (the same "list" firing, a second reading) gains
    nothing where it fires, though it covers every window: it is merged or dropped, never kept beside it."""
    agent = make_agent(vocab, _neuron(vocab, np.random.default_rng(1)))
    active = agent.hypothesis()
    ws = agent.ws
    strong = build_mode(ws, [TokenIn(("list",))])
    weak = build_mode(ws, [TokenIn(("when",)), TokenIn(("after",))])
    echo = build_mode(ws, [TokenIn(("lists", "list"))])  # fires exactly where "list" does
    modes, _ = agent.earn([strong, weak, echo], active)
    assert len(modes) == 2
    kept = {t for m in modes for c in m.conditions if isinstance(c, TokenIn) for t in c.tokens}
    assert {"list", "when", "after"} <= kept
