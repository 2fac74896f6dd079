"""What makes two modes one meaning (the closed classes of the concept vocabulary) and what a mode must
cover to earn its place (windows, not tokens) — hand-built cases with the answer worked out here."""

from __future__ import annotations

from collections import Counter

import pytest

from hand_built import make_agent, minilm_vocab, window
from neuronscope.agents import OfflineConfig
from neuronscope.agents.concepts import CLOSED, class_share, closed_concept, shared_class
from neuronscope.explanations import Mode, TokenIn


def _concept(name: str):
    return next(c for c in CLOSED if c.name == name)


def test_class_share_and_shared_class_by_hand():
    keywords = _concept("Python keywords")
    assert class_share(keywords, Counter({"while": 3.0, "spam": 1.0})) == pytest.approx(0.75)
    # "while" alone and a set of keywords: one class holds both
    assert shared_class(Counter({"while": 1.0}), Counter({"def": 2.0, "return": 1.0})).name == "Python keywords"
    # "and/or" (conjunctions, logic words) and "not/else" (logic words, keywords): the first class holding both
    both = shared_class(Counter({"and": 1.0, "or": 1.0}), Counter({"not": 1.0, "else": 1.0}))
    assert both is not None
    assert both.name == "logic words"
    # "(" and ".": only the catch-all punctuation class holds both, which is no evidence of one meaning
    assert shared_class(Counter({"(": 1.0}), Counter({".": 1.0})) is None
    assert shared_class(Counter({"list": 1.0}), Counter({"large": 1.0})) is None


@pytest.fixture(scope="module")
def vocab():
    return minilm_vocab()


def test_cover_counts_windows_not_tokens(vocab):
    """One window of 300 dashes and four windows with one 'list' each: 'list' fires on 4 of 304 activating
    tokens (1.3%, below the 5% rule) but in 4 of the 5 windows that hold any (80%)."""
    wins = [window(vocab, ["-"] * 300, [3.0] * 300)]
    wins += [window(vocab, ["list", "the", "of"], [2.0, 0.0, 0.0]) for _ in range(4)]
    wins += [window(vocab, ["the", "of", "a"], [0.0, 0.0, 0.0], kind="random") for _ in range(3)]
    agent = make_agent(vocab, wins)
    active = agent.hypothesis()
    assert int(active.sum()) == 304
    lst = Mode("list", conditions=[TokenIn(("list",))])
    dash = Mode("dash", conditions=[TokenIn(("-",))])
    assert agent.cover(lst, active) == pytest.approx(4 / 5)
    assert agent.cover(dash, active) == pytest.approx(1 / 5)
    assert int((agent.ws.fires(lst) & active).sum()) / int(active.sum()) < OfflineConfig().min_mode_cover


def test_same_class_decides_merges(vocab):
    wins = [window(vocab, ["while", "def", "return", "the", "(", ".", "create", "remove", "7", "12"],
                    [3.0, 3.0, 3.0, 0.0, 2.0, 2.0, 1.5, 1.5, 2.5, 2.5])]
    agent = make_agent(vocab, wins)
    active = agent.hypothesis()

    def m(*toks: str) -> Mode:
        return Mode("/".join(toks), conditions=[TokenIn(toks)])

    assert agent.same_class(m("while"), m("def", "return"), active) is True  # one class: Python keywords
    assert agent.same_class(m("("), m("."), active) is None  # catch-all only: the features decide
    assert agent.same_class(m("7", "12"), m("create", "remove"), active) is False  # numbers vs no class
    assert agent.same_class(m("def", "return"), m("7", "12"), active) is False  # two different classes
    assert agent.similar(m("while"), m("def", "return"), active)
    assert not agent.similar(m("7", "12"), m("create", "remove"), active)


def test_sub_classes_of_punctuation_leave_the_decision_to_strength_and_features(vocab):
    """Commas/colons and full stops/question marks are two closed classes, but both lie inside the catch-all
    punctuation class: no evidence either way (a neuron's one punctuation meaning splits between them). A
    closed class against a mode outside every class is still two meanings."""
    wins = [window(vocab, [",", ":", ";", ".", "?", "!", "+", "-", "7", "12", "create", "remove"],
                    [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.5, 2.5, 1.0, 1.0])]
    agent = make_agent(vocab, wins)
    active = agent.hypothesis()

    def m(*toks: str) -> Mode:
        return Mode("/".join(toks), conditions=[TokenIn(toks)])

    commas, stops, ops = m(",", ":", ";"), m(".", "?", "!"), m("+", "-")
    # two different closed classes: the rule "different classes, different meanings" would have said False
    assert closed_concept(Counter(dict.fromkeys(commas.conditions[0].tokens, 2.0))).name == "commas and colons"
    assert closed_concept(Counter(dict.fromkeys(stops.conditions[0].tokens, 2.0))).name != "commas and colons"
    assert agent.same_class(commas, stops, active) is None
    assert agent.same_class(ops, commas, active) is None
    assert agent.same_class(m("7", "12"), m("create", "remove"), active) is False
    # Undecided by the classes, the strengths decide here (no features): alike (2.0 and 2.0) → one meaning.
    assert agent.similar(commas, stops, active)


def test_the_earning_rule_lets_a_broad_mode_earn_with_a_smaller_gain():
    from neuronscope.agents.base import AgentConfig
    from neuronscope.agents.earning import earns

    cfg = AgentConfig()
    assert (cfg.min_mode_cover, cfg.min_mode_gain, cfg.broad_mode_cover, cfg.broad_mode_gain) == (0.05, 0.01, 0.15,
                                                                                                   0.005)
    assert earns(cfg, 0.05, 0.01)
    assert earns(cfg, 0.9, 0.02)
    assert not earns(cfg, 0.04, 0.5)  # too narrow, whatever it buys
    assert not earns(cfg, 0.10, 0.009)  # narrow: the full gain is needed
    assert earns(cfg, 0.15, 0.005)  # broad: the smaller gain is enough
    assert earns(cfg, 0.30, 0.007)
    assert not earns(cfg, 0.30, 0.004)
    off = AgentConfig(broad_mode_cover=1.01)  # the second tier off: the single rule
    assert not earns(off, 0.30, 0.007)
    assert earns(off, 0.30, 0.01)
