"""Meanings that one strength cannot tell apart: the class split (a closed class among words unlike it) and the
shadowed mode (another mode's broad atom fires on its tokens) — hand-built cases with the answer worked out here,
and the word similarity against a numpy recomputation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hand_built import make_agent, minilm_vocab, window
from neuronscope.agents.concepts import MAX_SPLIT_SIMILARITY, class_split, single_class, word_similarity
from neuronscope.agents.workspace import atoms
from neuronscope.embedding import static_word_vectors
from neuronscope.explanations import AllOf, Mode, Not, TokenIn, TokenRegex


def _parts(**mass: float) -> list[Counter]:
    return [Counter({k: v}) for k, v in mass.items()]


def test_word_similarity_is_the_cosine_of_weighted_centroids():
    a, b = Counter({"file": 2.0, "directory": 1.0}), Counter({"import": 3.0})
    v = static_word_vectors(["file", "directory", "import"]).numpy().astype(np.float64)
    ca, cb = 2.0 * v[0] + 1.0 * v[1], 3.0 * v[2]
    want = ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb))
    assert word_similarity([a], [b]) == pytest.approx(want, abs=1e-5)
    # two groups of Counters pool their masses
    assert word_similarity([Counter({"file": 2.0}), Counter({"directory": 1.0})], [b]) == pytest.approx(want, abs=1e-5)


def test_class_split_by_hand():
    # a keyword beside file words: unlike in meaning (cosine well below the bar), one side a class by itself;
    # file words hold 6/9 of the mass, below the 0.7 that would name the whole mode
    got = class_split(_parts(file=3.0, directory=2.0, files=1.0, **{"import": 3.0}))
    assert got is not None
    concept, inside = got
    assert concept.name == "file and path words"  # the larger class side
    assert inside == [0, 1, 2]
    # with the keyword at 2.0 the file words hold 0.75 and name the whole mode, and it is still split by that
    # class from the word outside it (a quarter of the mass is no stray member) ...
    assert class_split(_parts(file=3.0, directory=2.0, files=1.0, **{"import": 2.0})) == (concept, [0, 1, 2])
    # ... but not below MIN_SPLIT_SHARE outside it (0.5 of 6.5)
    assert class_split(_parts(file=3.0, directory=2.0, files=1.0, **{"import": 0.5})) is None
    # numbers beside creating words, numbers holding 0.8 of the mass (the graded planted family's merge)
    got = class_split(_parts(**{"5": 4.0, "412": 4.0, "3000": 4.0}, created=1.5, deleted=1.5))
    assert got is not None
    assert got[0].name == "numbers"
    assert got[1] == [0, 1, 2]
    # one class names the whole mode: opening and closing brackets are brackets
    assert class_split(_parts(**{"(": 2.0}) + _parts(**{")": 2.0})) is None
    # alike in meaning: "these", "those" (determiners) beside "they"
    assert word_similarity([Counter({"these": 1.0, "those": 1.0})], [Counter({"they": 1.0})]) >= MAX_SPLIT_SIMILARITY
    assert class_split(_parts(these=1.0, those=1.0, they=1.0)) is None
    # a lone class member among arbitrary words is no second meaning (neither side is a class by itself)
    assert class_split(_parts(same=1.0, extra=1.0, old=1.0, new=1.0)) is None
    # token shapes do not split word families ("called" is an -ed word, "calls" is not)
    assert class_split(_parts(called=2.0, invoked=1.0, calls=2.0, call=1.0)) is None
    # a class side below MIN_SPLIT_SHARE (5 of 65) stays
    assert class_split(_parts(file=3.0, directory=2.0, spam=30.0, eggs=30.0)) is None


def test_single_class_reads_one_word_modes():
    assert single_class(Counter({"import": 1.0})).name == "Python keywords"
    assert single_class(Counter({"spam": 1.0})) is None
    assert single_class(Counter({"def": 1.0, "return": 1.0})).name == "Python keywords"


@pytest.fixture(scope="module")
def vocab():
    return minilm_vocab()


def test_agent_splits_a_mixed_mode_and_keeps_the_halves_apart(vocab):
    words = ["file", "directory", "import", "def", "the", "of", "a", "is"]
    wins = [window(vocab, words, [3.0, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0]) for _ in range(4)]
    agent = make_agent(vocab, wins)
    active = agent.hypothesis()
    mixed = Mode("mixed", conditions=[TokenIn(("file", "directory", "import", "def"))])
    got = agent.split_classes([mixed], active)
    sets = sorted(sorted(t for a in atoms(m) for t in a.tokens) for m in got)
    assert sets == [["def", "import"], ["directory", "file"]]
    # and the merge test does not put them back together, nor a lone keyword with the file words
    a, b = got
    assert agent.same_class(a, b, active) is False
    assert agent.same_class(Mode("i", conditions=[TokenIn(("import",))]),
                            Mode("f", conditions=[TokenIn(("file", "directory"))]), active) is False
    # a pure class is left alone
    pure = Mode("kw", conditions=[TokenIn(("import", "def"))])
    assert [m.conditions for m in agent.split_classes([pure], active)] == [pure.conditions]


def test_a_demonstrative_and_the_pronouns_share_a_class(vocab):
    wins = [window(vocab, ["this", "it", "they", "them", "the", "of"], [2.0, 2.0, 2.0, 2.0, 0.0, 2.0])
            for _ in range(3)]
    agent = make_agent(vocab, wins)
    active = agent.hypothesis()
    # "this" is a demonstrative pronoun as well as a determiner: the classes say one meaning with the pronouns
    assert agent.same_class(Mode("t", conditions=[TokenIn(("this",))]),
                            Mode("p", conditions=[TokenIn(("it", "they", "them"))]), active) is True
    # a preposition and the pronouns: one word of another class, unlike in meaning — never one meaning
    assert agent.same_class(Mode("o", conditions=[TokenIn(("of",))]),
                            Mode("p", conditions=[TokenIn(("it", "they", "them"))]), active) is not True


def _shadow_windows(vocab, colon: float = 1.5, extra_punct: bool = False, unexplained: float = 0.0):
    wins = []
    for k in range(6):
        # "of" at ``unexplained`` in every other window: variance that neither mode explains
        toks, acts = ["-", "-", ":", ",", "the", "of"], [3.0, 3.0, colon, colon, 0.0, unexplained * (k % 2)]
        if extra_punct:  # punctuation only the broad atom explains
            toks, acts = [*toks, "?", "!", ";", "+"], [*acts, 2.8, 2.8, 2.8, 2.8]
        wins.append(window(vocab, toks, acts))
    wins += [window(vocab, ["the", "of", "a", "is"], [0.0] * 4, kind="random") for _ in range(3)]
    return wins


def _two_modes(agent):
    from neuronscope.agents.workspace import build_mode

    dash = build_mode(agent.ws, [TokenIn(("-",)), TokenRegex(r"^[^\w\s]+$")])
    colon = build_mode(agent.ws, [TokenIn((":", ","))])
    return dash, colon


def _has_regex(m: Mode) -> bool:
    return any(isinstance(a, TokenRegex) or (isinstance(a, AllOf) and isinstance(a.conditions[0], TokenRegex))
               for a in atoms(m))


def test_a_shadowed_mode_earns_its_place_once_the_broad_atom_goes(vocab):
    """Dashes at 3.0 with "any punctuation" (mean 2.25 over -, :, ,) in one mode; ":" and "," at 1.5 in the
    other. Combined by the largest magnitude, the broad atom predicts 2.25 on ":" and ",": the second mode adds
    nothing and would go to the background. Without the broad atom both modes are exact."""
    agent = make_agent(vocab, _shadow_windows(vocab))
    active = agent.hypothesis()
    dash, colon = _two_modes(agent)
    assert agent.ws.score([dash, colon]) - agent.ws.score([dash]) < agent.cfg.min_mode_gain  # shadowed
    modes, background = agent.earn([dash, colon], active)
    assert background is None
    assert len(modes) == 2
    assert not any(_has_regex(m) for m in modes)  # removed: nothing else for it to explain
    assert agent.ws.score(modes) == pytest.approx(1.0, abs=1e-4)
    assert any("shadowed" in d for d in agent.transcript[-1]["decisions"])


def test_a_broad_atom_that_explains_more_keeps_the_rest(vocab):
    """Here the broad atom is the only explanation of ?, !, ; and + (2.8): it stays, but no longer fires on
    ":" and ",", which become the shadowed mode's own (any punctuation, but not ":" or ",")."""
    agent = make_agent(vocab, _shadow_windows(vocab, extra_punct=True))
    active = agent.hypothesis()
    dash, colon = _two_modes(agent)
    modes, _ = agent.earn([dash, colon], active)
    assert len(modes) == 2
    broad = [a for m in modes for a in atoms(m) if isinstance(a, AllOf)]
    assert len(broad) == 1
    assert isinstance(broad[0].conditions[0], TokenRegex)
    assert Not(TokenIn((":", ","))) in broad[0].conditions
    fires = agent.ws.fires(Mode("b", conditions=broad))
    pieces = [agent.ws.vocab.pieces[int(i)].strip() for i in agent.ws.batch.ids[agent.ws.batch.scored][fires].tolist()]
    assert set(pieces) == {"-", "?", "!", ";", "+"}


def test_a_second_reading_of_one_strength_is_not_unshadowed(vocab):
    """":" and "," at 2.95, beside dashes at 3.0: "any punctuation" (2.97) already predicts them; taking them out
    of it buys less than a mode must earn (with "of" firing unexplained, the others leave an error to compare
    with), so the mode stays unearned."""
    agent = make_agent(vocab, _shadow_windows(vocab, colon=2.95, unexplained=2.0))
    active = agent.hypothesis()
    dash, colon = _two_modes(agent)
    modes, _ = agent.earn([dash, colon], active)
    assert len(modes) == 1
    assert _has_regex(modes[0])
