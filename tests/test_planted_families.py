"""Planted families beyond the condition grammar: each feature against values worked out by hand on small
token streams, the generated suite, the word lists against the real pydoc corpus, and the corpus values
against the activation source's probe-text values (one definition for both)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import neuronscope
from neuronscope.activations import activation_source
from neuronscope.errors import ConfigError
from neuronscope.eval.definition import PlantedNeuron, TokenStream, TrueMode, definition, mode_values
from neuronscope.eval.families import CATEGORIES, CONTEXT_PAIRS, FAMILIES, OVERLAPS, PER_FAMILY, open_families
from neuronscope.eval.planted import (
    CONCEPTS,
    build_planted_store,
    corpus_stream,
    grammar_suite,
    mode_masks,
    standard_suite,
)
from neuronscope.explanations import TokenIn
from neuronscope.explanations.vocab import Vocab


def _stream(*docs: list[str]) -> TokenStream:
    """A stream whose vocabulary is exactly the given pieces (a leading space starts a word)."""
    pieces = [p for d in docs for p in d]
    vocab = Vocab.from_strings(pieces)
    return TokenStream(vocab.encode(pieces), np.repeat(np.arange(len(docs)), [len(d) for d in docs]), vocab)


def _one(feature: dict, strength: float = 1.0) -> PlantedNeuron:
    return PlantedNeuron("test", [TrueMode("m", [], strength, feature)], [[0]])


def _values(feature: dict, stream: TokenStream, strength: float = 1.0) -> np.ndarray:
    return mode_values(_one(feature, strength), stream)[0]


def test_words_fire_on_every_piece_of_a_whole_word():
    s = _stream([" we", " call", " str", "ings", " ,", " string", "ify", " the", " Strings", " f", "(", "call"])
    got = _values({"kind": "words", "words": ["strings", "call"]}, s, 2.0)
    # "str"+"ings" is the word "strings" (both pieces fire); "string"+"ify" is "stringify" (neither);
    # "(" is no word piece, so "call" after it is a word of its own.
    np.testing.assert_array_equal(got, [0, 2, 2, 2, 0, 0, 0, 0, 2, 0, 0, 2])


def test_numbers_are_graded_by_value():
    s = _stream([" 0", " 9", " 99", " 1", "000", " x9", " 12345", " 3", ".", "5"])
    got = _values({"kind": "number"}, s, 2.0)
    # 0.25 + 0.75 * min(1, log10(1 + v) / 4), by hand: 1000 → 0.25 + 0.1875 * 3.000434; 3 → 0.25 + 0.1875 * 0.602060;
    # 5 → 0.25 + 0.1875 * 0.778151; "x9" is no number; "3", ".", "5" are three words.
    want = [0.25, 0.4375, 0.625, 0.812581, 0.812581, 0.0, 1.0, 0.362886, 0.0, 0.395903]
    np.testing.assert_allclose(got, 2 * np.asarray(want), atol=2e-6)


def test_phrases_fire_on_their_last_token_inside_one_document():
    s = _stream([" for", " example", " ,", " such", " as", " in", " order", " to", " go", " for", " the", " example",
                 " for"],
                [" example", " rather", " than", " in", " par", "ticular"])
    f = {"kind": "phrase", "phrases": [["for", "example"], ["such", "as"], ["in", "order", "to"], ["rather", "than"],
                                       ["in", "particular"]]}
    got = _values(f, s, 3.0)
    # "the example" is no phrase; "for" | "example" crosses a document boundary; "particular" is two pieces.
    np.testing.assert_array_equal(got, [0, 3, 0, 0, 3, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 3])


def test_document_start_falls_with_position():
    s = _stream([" a", " b", " c", " d", " e", " f"], [" g", " h"])
    got = _values({"kind": "doc_start", "first": 4}, s, 3.0)
    np.testing.assert_allclose(got, [3.0, 2.5, 2.0, 1.5, 0, 0, 3.0, 2.5])


def test_overlapping_modes_share_tokens_and_the_stronger_wins():
    s = _stream([" list", " sequence", " string", " x"])
    n = PlantedNeuron("overlap", [TrueMode("a", [], 3.0, {"kind": "words", "words": ["sequence", "list"]}),
                                  TrueMode("b", [], 1.5, {"kind": "words", "words": ["sequence", "string"]})],
                      [[0], [1]])
    np.testing.assert_array_equal(mode_masks(n, s), [[1, 1, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(definition(n, s), [3.0, 3.0, 1.5, 0.0])


def test_parenthesis_context_splits_the_same_words():
    s = _stream([" f", " (", " x", " ,", " (", " y", " )", " x", " )", " x", " )", " )", " y", " (", " x"], [" x"])
    inside = _values({"kind": "words", "words": ["x", "y"], "context": {"kind": "parens", "inside": True}}, s)
    outside = _values({"kind": "words", "words": ["x", "y"], "context": {"kind": "parens", "inside": False}}, s)
    # depth before each token: 0 0 1 1 1 2 2 1 1 0 0 0 0 0 1 | 0 (a stray ")" closes nothing; documents reset it)
    np.testing.assert_array_equal(np.flatnonzero(inside), [2, 5, 7, 14])
    np.testing.assert_array_equal(np.flatnonzero(outside), [9, 12, 15])


def test_after_context_looks_back_a_window_inside_the_document():
    s = _stream([" return", " the", " value", " a", " b", " c", " value", " returns", " value", " return"], [" value"])
    ctx = {"kind": "after", "words": ["return"], "window": 3}
    near = _values({"kind": "words", "words": ["value"], "context": {**ctx, "present": True}}, s)
    far = _values({"kind": "words", "words": ["value"], "context": {**ctx, "present": False}}, s)
    np.testing.assert_array_equal(np.flatnonzero(near), [2])
    np.testing.assert_array_equal(np.flatnonzero(far), [6, 8, 10])  # "returns" is another word


def test_grammar_modes_and_feature_modes_combine_by_max():
    s = _stream([" return", " 7", " x"])
    n = PlantedNeuron("mix", [TrueMode("ret", [TokenIn(("return", "x"))], 2.0),
                              TrueMode("num", [], 4.0, {"kind": "number"})], [[0], [1]])
    np.testing.assert_allclose(definition(n, s), [2.0, 4 * (0.25 + 0.1875 * np.log10(8)), 2.0], rtol=1e-6)


def test_features_are_validated():
    with pytest.raises(ConfigError, match=r"feature\.kind"):
        TrueMode("m", [], 1.0, {"kind": "colour"})
    with pytest.raises(ConfigError, match=r"feature\.words"):
        TrueMode("m", [], 1.0, {"kind": "words", "words": []})
    with pytest.raises(ConfigError, match="no conditions"):
        TrueMode("m", [TokenIn(("a",))], 1.0, {"kind": "number"})
    m = TrueMode("m", [], 1.0, {"kind": "phrase", "phrases": [["such", "as"]]})
    assert TrueMode.from_dict(m.to_dict()) == m


def test_open_families_shape():
    fams = open_families(0)
    kinds = [n.kind for n in fams]
    assert kinds == [k for k in FAMILIES for _ in range(PER_FAMILY)]
    by = {k: [n for n in fams if n.kind == k] for k in FAMILIES}
    concept_tokens = {t for c in CONCEPTS.values() if isinstance(c, TokenIn) for t in c.tokens}
    for n in by["category"]:
        for m in n.modes:
            assert m.feature["kind"] == "words"
            assert "context" not in m.feature
            assert not set(m.feature["words"]) & concept_tokens  # categories the grammar families never use
    assert all(n.modes[0].feature == {"kind": "number"} for n in by["graded"])
    assert all(m.feature["kind"] == "phrase" for n in by["phrase"] for m in n.modes)
    assert all(n.modes[0].feature["kind"] == "doc_start" for n in by["position"])
    for n in by["overlap"]:
        a, b = (set(m.feature["words"]) for m in n.modes)
        assert a & b
        assert a - b
        assert b - a
    for n in by["context-pair"]:
        a, b = n.modes
        assert a.feature["words"] == b.feature["words"]
        assert a.feature["context"] != b.feature["context"]
        assert a.strength > b.strength
    assert [n.to_dict() for n in open_families(0)] == [n.to_dict() for n in fams]
    assert [n.to_dict() for n in open_families(1)] != [n.to_dict() for n in fams]
    assert [n.to_dict() for n in standard_suite(0)] == [n.to_dict() for n in grammar_suite(0) + fams]
    assert len(OVERLAPS) >= PER_FAMILY
    assert len(CONTEXT_PAIRS) >= PER_FAMILY


def test_every_family_fires_in_the_pydoc_corpus(minilm_store, tmp_path):
    from neuronscope.corpus.readers import CorpusSpec
    from neuronscope.corpus.tokenize import build_token_store

    tok = minilm_store.tokenizer()
    store, _ = build_token_store(CorpusSpec("pydoc"), tok, tmp_path / "t", workers=1)
    ids, seg = store.tokens[:].astype(np.int64), store.doc_of(np.arange(store.n_tokens))
    s = TokenStream(ids, seg, Vocab.from_tokenizer(tok))
    for n in open_families(0):
        fires = mode_masks(n, s).sum(1)
        assert (fires >= 20).all(), (n.kind, [m.label for m in n.modes], fires)
    for name, words in CATEGORIES.items():
        assert s.word_mask(words).sum() >= 100, name


def _imports(path: Path, root: Path) -> set[str]:
    """Absolute names of the modules (and imported names) ``path`` imports, relative imports resolved."""
    pkg = ["neuronscope", *path.relative_to(root).parts[:-1]]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return out


def test_no_explainer_module_imports_the_ground_truth():
    """The word lists stay unseen: agents, explanations, scoring and llm never import ``neuronscope.eval``."""
    root = Path(neuronscope.__file__).parent
    assert "neuronscope.eval.definition" in _imports(root / "activations.py", root)  # the resolver sees imports
    seen = sorted(f"{p.relative_to(root)}: {m}" for sub in ("agents", "explanations", "scoring", "llm")
                  for p in (root / sub).rglob("*.py") for m in _imports(p, root) if m.startswith("neuronscope.eval"))
    assert not seen, seen


def _family_neurons() -> list[PlantedNeuron]:
    w = {"kind": "words", "words": ["assert", "expression", "statement", "statements"]}
    return [
        PlantedNeuron("category", [TrueMode("words", [], 3.0, w)], [[0]], keep=1.0),
        PlantedNeuron("graded", [TrueMode("numbers", [], 3.0, {"kind": "number"}),
                                 TrueMode("the", [TokenIn(("the",))], 1.0)], [[0], [1]], keep=1.0),
        PlantedNeuron("phrase", [TrueMode("p", [], 2.0, {"kind": "phrase", "phrases": [["assert", "statement"],
                                                                                      ["is", "equivalent", "to"]]})],
                      [[0]], keep=1.0),
        PlantedNeuron("position", [TrueMode("start", [], 3.0, {"kind": "doc_start", "first": 8})], [[0]], keep=1.0),
        PlantedNeuron("context-pair", [
            TrueMode("in", [], 3.0, {**w, "words": ["expression", "assert"], "context": {"kind": "parens",
                                                                                        "inside": True}}),
            TrueMode("out", [], 1.0, {**w, "words": ["expression", "assert"], "context": {"kind": "after",
                                                                                         "words": ["if", "not"],
                                                                                         "window": 2,
                                                                                         "present": False}})],
            [[0], [1]], keep=1.0),
    ]


def test_corpus_values_and_probe_texts_come_from_one_definition(minilm_store, tmp_path):
    neurons = _family_neurons()
    st = build_planted_store(minilm_store, tmp_path / "p", neurons, seed=3)
    stream = corpus_stream(st)
    clean = np.stack([definition(n, stream) for n in neurons], axis=1)
    acts = np.load(st.path / "planted_activations.npy")
    for j, n in enumerate(neurons):
        top = max(m.strength for m in n.modes)
        on = clean[:, j] > 0
        assert on.sum() >= 3, n.kind
        # keep = 1: the definition everywhere, up to 5% multiplicative and 2%-of-max additive noise (6 sigma)
        # and the 0.15-of-max distractor on 0.5% of the tokens
        bound = 6 * (0.05 * clean[:, j] + 0.02 * top)
        off = np.abs(acts[:, j] - clean[:, j]) > bound
        assert off.mean() < 0.01, n.kind
        assert np.all(np.abs(acts[off, j] - clean[off, j]) < bound[off] + 0.15 * top), n.kind
    # A corpus document's opening, as text, through the activation source: exactly the corpus definition.
    tok = st.tokenizer()
    a, b = (int(x) for x in st.tokens.doc_offsets[:2])
    ids = st.tokens.tokens[a:b].astype(np.int64)
    pieces = tok.convert_ids_to_tokens(ids.tolist())
    cut = max(i for i in range(1, min(len(ids), 250)) if not pieces[i].startswith("##"))  # at a word boundary
    text = tok.decode(ids[:cut].tolist())
    [(got_ids, got)] = activation_source(st).on_texts([text], 0, list(range(len(neurons))))
    np.testing.assert_array_equal(got_ids, ids[:cut])
    np.testing.assert_array_equal(got, clean[a : a + cut])
    assert (got > 0).any(0).all()  # every neuron fires somewhere in the probe: the comparison is not vacuous
