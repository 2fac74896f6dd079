"""Neighbour probes: corpus occurrences of the words nearest in meaning to a mode's words (activation feedback
that lets a category be learnt beyond the members the top-k happened to show)."""

from __future__ import annotations

import numpy as np
import torch

from neuronscope.agents import AgentConfig
from neuronscope.agents.explainers import ExplainContext
from neuronscope.agents.feedback import neighbour_words
from neuronscope.embedding import minilm, static_word_vectors
from neuronscope.explanations import TokenIn
from neuronscope.explanations.model import Mode, normalise
from neuronscope.scoring.run import StoreSource


def _reference(word: str) -> np.ndarray:
    """The static vector recomputed with numpy from the embedding table (centred, mean over pieces, unit)."""
    tok, model = minilm()
    table = model.embeddings.word_embeddings.weight.detach().numpy().astype(np.float64)
    table = table - table.mean(0)
    v = table[tok(word, add_special_tokens=False)["input_ids"]].mean(0)
    return v / np.linalg.norm(v)


def test_static_word_vectors_are_the_centred_mean_input_embeddings():
    words = ["create", "creating", "parenthesis", "unbelievably"]  # one piece and several pieces
    got = static_word_vectors(words).numpy()
    for w, g in zip(words, got, strict=True):
        np.testing.assert_allclose(g, _reference(w), atol=1e-5)
    assert static_word_vectors([]).shape == (0, 384)


def test_neighbour_words_are_the_brute_force_nearest_to_the_centroid():
    seeds = ["create", "delete"]
    pool = ["creating", "created", "deleted", "remove", "banana", "parenthesis", "create", "the", "blue", "destroy"]
    got = neighbour_words(seeds, pool, k=4, min_sim=0.0)
    c = np.mean([_reference(w) for w in seeds], axis=0)
    c /= np.linalg.norm(c)
    others = [w for w in pool if w not in seeds]
    sims = {w: float(_reference(w) @ c) for w in others}
    assert got == sorted(others, key=lambda w: -sims[w])[:4]
    assert "create" not in got
    assert {"creating", "created", "deleted"} <= set(got)  # the same family, not "banana"
    # the similarity floor cuts the list; nothing passes an impossible one
    assert all(sims[w] >= 0.3 for w in neighbour_words(seeds, pool, k=9))
    assert neighbour_words(seeds, pool, min_sim=1.01) == []
    assert neighbour_words([], pool) == []
    assert neighbour_words(seeds, []) == []


def test_probe_fetches_real_activations_on_words_near_a_word_mode(minilm_store):
    src = StoreSource(minilm_store)
    ev = src.evidence(1, [7])[0]
    probe = ExplainContext(src, AgentConfig(neighbour_probes=True)).probe(ev)
    tok = minilm_store.tokens
    corpus = {normalise(ev.vocab.pieces[int(i)]) for i in tok.tokens[:]
              if not ev.vocab.pieces[int(i)].startswith("##")}
    near = set(neighbour_words(["name"], sorted(w for w in corpus if w.isalpha() and len(w) > 1)))
    assert {"names", "named"} & near  # the corpus holds the family
    windows = probe([Mode("name", conditions=[TokenIn(("name",))])], 6)
    focus = [normalise(ev.vocab.pieces[int(w.ids[w.focus])]) for w in windows]
    assert "name" in focus  # the mode's own occurrences ...
    on_near = [w for w, f in zip(windows, focus, strict=True) if f in near]
    assert on_near  # ... and its neighbours', which the mode does not fire on
    taken = {p for w in ev.train + ev.heldout if w.start >= 0 for p in range(w.start, w.start + len(w.ids))}
    for w in on_near:  # outside the evidence, with the subject model's real activations
        assert w.kind == "probe"
        assert w.start + w.focus not in taken
        assert np.isfinite(w.acts).all()
        assert len(w.acts) == len(w.ids)
    # the activations are the store's own: recomputed for one window they agree
    from neuronscope.activations import activation_source

    w = on_near[0]
    ref = activation_source(minilm_store).at(1, [7], np.arange(w.start, w.start + len(w.ids)))[:, 0]
    np.testing.assert_allclose(w.acts, ref, rtol=1e-4, atol=1e-4)
    assert torch.is_tensor(static_word_vectors(["x"]))
    # off by default: the same probe without neighbours centres every window on the mode's own word
    plain = ExplainContext(src, AgentConfig()).probe(ev)([Mode("name", conditions=[TokenIn(("name",))])], 6)
    assert plain
    assert {normalise(ev.vocab.pieces[int(w.ids[w.focus])]) for w in plain} == {"name"}
