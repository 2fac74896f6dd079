"""``proposals.split_context`` on hand-built neurons whose answer is worked out here: a word that activates in
one context only is restricted there inside its mode (not made a second mode), and when a context splits a word
set into two activating levels, the mode's other atoms go with the side whose level they share."""

from __future__ import annotations

import pytest
import torch

from hand_built import make_agent, minilm_vocab, window
from neuronscope.agents.proposals import split_context
from neuronscope.agents.workspace import build_mode
from neuronscope.explanations import AllOf, Not, PrevTokenIn, TokenIn


@pytest.fixture(scope="module")
def vocab():
    return minilm_vocab()


def _active(agent) -> torch.Tensor:
    agent.hypothesis()
    return agent.ws.batch.acts >= agent.ws.threshold


def _fires(ws, mode) -> set[int]:
    return set(torch.nonzero(ws.fires(mode)).squeeze(1).tolist())


def test_a_word_that_activates_in_one_context_only_is_restricted_inside_its_mode(vocab):
    # "instance" after "for" 1.8, "example" after "for" 1.7, "example" anywhere else 0: one phrase mode.
    wins = [window(vocab, ["use", "for", "instance", "the", "list"], [0, 0, 1.8, 0, 0]) for _ in range(6)]
    wins += [window(vocab, ["see", "for", "example", "a", "dict"], [0, 0, 1.7, 0, 0]) for _ in range(6)]
    wins += [window(vocab, ["an", "example", "of", "the", "example"], [0, 0, 0, 0, 0], kind="random")
             for _ in range(6)]
    agent = make_agent(vocab, wins)
    ws = agent.ws
    active = _active(agent)
    phrase = AllOf((TokenIn(("instance",)), PrevTokenIn(("for",), 1)))
    mode = build_mode(ws, [phrase, TokenIn(("example",))])
    props = split_context(agent, [mode], active)
    assert props, "the context that separates the firing 'example' from the silent one was not proposed"
    assert all(len(ms) == 1 for _, ms in props), [why for why, _ in props]
    # brute force: the tokens where the neuron fires are exactly the ones the restricted mode fires on
    want = set(torch.nonzero(ws.batch.acts > 1.0).squeeze(1).tolist())
    assert any(_fires(ws, ms[0]) == want for _, ms in props), [ms[0].description for _, ms in props]
    restricted = next(ms[0] for _, ms in props if _fires(ws, ms[0]) == want)
    assert phrase in restricted.conditions
    negated = [c for c in restricted.conditions
               if isinstance(c, AllOf) and any(isinstance(p, Not) for p in c.conditions)]
    assert not negated


def test_a_split_sends_each_other_atom_to_the_side_whose_level_it_shares(vocab):
    # "x" fires 3.0 after "if" and 1.0 elsewhere; "y" (another atom of the mode) 3.0, "z" 1.0.
    wins = [window(vocab, ["if", "x", "the", "y"], [0, 3.0, 0, 3.0]) for _ in range(6)]
    wins += [window(vocab, ["of", "x", "a", "z"], [0, 1.0, 0, 1.0]) for _ in range(6)]
    wins += [window(vocab, ["list", "value", "is", "dict"], [0, 0, 0, 0], kind="random") for _ in range(6)]
    agent = make_agent(vocab, wins)
    ws = agent.ws
    active = _active(agent)
    y_after = PrevTokenIn(("the",), 1)  # fires on "y" only: level 3.0
    z_after = PrevTokenIn(("a",), 1)  # fires on "z" only: level 1.0
    mode = build_mode(ws, [TokenIn(("x",)), y_after, z_after])
    splits = [ms for why, ms in split_context(agent, [mode], active) if why.startswith("split")]
    assert splits, "the 'if' context (3.0 against 1.0) was not proposed as a split"
    strong, weak = splits[0]
    assert y_after in strong.conditions
    assert z_after not in strong.conditions
    assert z_after in weak.conditions
    assert y_after not in weak.conditions
    assert strong.strength == pytest.approx(3.0, abs=1e-5)
    assert weak.strength == pytest.approx(1.0, abs=1e-5)


def test_missed_words_of_one_class_are_proposed_together_as_a_new_mode(vocab):
    # The mode at hand covers "(" (3.0); comparison words (1.5) and a colour (1.5) are missed. One word alone
    # rarely buys a new mode's cost; the comparison words together are one proposal, without the colour.
    from neuronscope.agents.proposals import cover_missed

    wins = [window(vocab, ["(", "the", "("], [3.0, 0, 3.0]) for _ in range(6)]
    for w in ("equal", "greater", "less", "red"):
        wins += [window(vocab, ["is", w, "than"], [0, 1.5, 0], kind="random") for _ in range(3)]
    wins += [window(vocab, ["list", "value", "is", "dict"], [0, 0, 0, 0], kind="random") for _ in range(6)]
    agent = make_agent(vocab, wins)
    active = _active(agent)
    mode = build_mode(agent.ws, [TokenIn(("(",))])
    groups = [ms[-1] for why, ms in cover_missed(agent, [mode], active) if len(ms) == 2 and len(ms[-1].conditions) > 1]
    assert len(groups) == 1, [why for why, _ in cover_missed(agent, [mode], active)]
    words = {t for c in groups[0].conditions for t in c.tokens}
    assert words == {"equal", "greater", "less"}
