"""The polysemanticity screen (against scipy/scikit-learn), neuron selection, and the mode-description search."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import silhouette_score

from neuronscope.activations import activation_source
from neuronscope.errors import ConfigError, StoreError
from neuronscope.pipeline import select_neurons
from neuronscope.screen import screen


def _reference_clusters(vecs: np.ndarray, ids: np.ndarray, min_share: float) -> int:
    """The documented automatic cut, with scipy and scikit-learn: best-silhouette maxclust k in 2..6
    (ties: fewer), one cluster below 0.25; then clusters ≥ min_share with distinct commonest tokens."""
    if len(vecs) < 3:
        return 1
    z = linkage(vecs.astype(np.float64), "average", metric="cosine")
    best, best_lab = -np.inf, np.zeros(len(vecs), dtype=int)
    for k in range(2, 7):
        lab = fcluster(z, k, "maxclust")
        if len(set(lab)) < 2 or len(set(lab)) > len(vecs) - 1:
            continue
        s = silhouette_score(vecs, lab, metric="cosine")
        if s > best + 1e-12:
            best, best_lab = s, lab
    if best < 0.25:
        best_lab = np.zeros(len(vecs), dtype=int)
    counts = {c: int((best_lab == c).sum()) for c in set(best_lab.tolist())}
    big = [c for c, n in counts.items() if n >= max(2, min_share * len(vecs))]
    return max(1, len({int(np.bincount(ids[best_lab == c]).argmax()) for c in big}))


def test_screen_matches_scipy_reference(minilm_store):
    store = minilm_store
    rows = screen(store, [1], top=16, dims=0)
    assert sorted((r.layer, r.index) for r in rows) == [(1, i) for i in range(store.n_neurons)]
    keys = [r.key for r in rows]
    assert keys == sorted(keys)  # most polysemantic first
    st = store.stats(1)
    by = {r.index: r for r in rows}
    rng = np.random.default_rng(0)
    picks = [r.index for r in rows[:10]] + rng.choice(store.n_neurons, 20, replace=False).tolist()
    mismatches = 0
    for i in picks:
        pos = st.topk_positions[i, :16].numpy()
        pos = pos[pos >= 0]
        vecs = activation_source(store).vectors(1, pos) - st.mean.numpy()
        ref = _reference_clusters(vecs, store.tokens.tokens[pos].astype(np.int64), 0.15)
        mismatches += ref != by[i].clusters
    assert mismatches <= 1  # float32 distances in the core vs float64 in scipy may flip one near-tie
    assert any(r.clusters >= 2 for r in rows)


def test_select_neurons_is_seeded_and_adds_screen_candidates():
    available = [(layer, i) for layer in (0, 1) for i in range(50)]
    screen_rows = [{"layer": 1, "index": i} for i in (7, 3, 9, 11)]
    a = select_neurons(screen_rows, available, 10, 2, seed=3)
    assert a == select_neurons(screen_rows, available, 10, 2, seed=3)
    assert a != select_neurons(screen_rows, available, 10, 2, seed=4)
    assert len(a) == 12
    assert a == sorted(a)
    sampled = set(select_neurons([], available, 10, 0, seed=3))
    extra = [x for x in a if x not in sampled]
    want = [(1, i) for i in (7, 3, 9, 11) if (1, i) not in sampled][:2]
    assert sorted(extra) == sorted(want)
    with pytest.raises(ConfigError, match="more neurons"):
        select_neurons([], available, 101, 0, seed=0)


def _explanations(path, modes_by_neuron):
    rows = []
    for (layer, index), modes in modes_by_neuron.items():
        rows.append({"layer": layer, "index": index, "method": "neuronscope",
                     "explanation": {"schema": 1, "layer": layer, "index": index, "method": "neuronscope", "text": "",
                                     "modes": [{"label": lab, "description": desc, "conditions": [], "strength": 1.0,
                                                "exemplars": [], "scores": {}} for lab, desc in modes],
                                     "scores": {}, "meta": {}},
                     "heldout": {"score": 0.5 + 0.01 * index}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def search_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _explanations(run / "explanations.jsonl", {
        (0, 1): [("files", "file names, paths and directories"), ("numbers", "digits and numbers")],
        (0, 2): [("keywords", "Python keywords such as def, class and return")],
        (1, 5): [("weather", "rain, snow and the weather")],
        (2, 9): [("negation", "negation words: not, never, no")],
    })
    return run


def test_search_finds_the_neuron_whose_mode_means_the_query(search_run, monkeypatch):
    from neuronscope import search as search_mod

    n = search_mod.build_index(search_run / "explanations.jsonl", search_run / "search")
    assert n == 5
    assert search_mod.index_is_current(search_run / "explanations.jsonl", search_run / "search")
    hits = search_mod.search("a folder path on disk", search_run, k=3)
    assert (hits[0].layer, hits[0].index) == (0, 1)
    assert hits[0].label == "files"
    assert len({(h.layer, h.index) for h in hits}) == len(hits) == 3  # one hit per neuron
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert search_mod.search("it is raining", search_run, k=1)[0].index == 5
    assert search_mod.search("numerals like 3 and 42", search_run, k=1)[0].label == "numbers"
    # The same answers without faiss (the saved vectors, exact inner products).
    idx = search_mod.SearchIndex(search_run / "search")
    monkeypatch.setattr(search_mod, "_faiss", lambda: None)
    plain = search_mod.SearchIndex(search_run / "search")
    assert plain.backend == "numpy"
    for q in ("a folder path on disk", "the word not"):
        a, b = idx.query(q, 4), plain.query(q, 4)
        assert [(h.layer, h.index) for h in a] == [(h.layer, h.index) for h in b]
        np.testing.assert_allclose([h.similarity for h in a], [h.similarity for h in b], rtol=1e-5, atol=1e-6)


def test_search_index_staleness_and_bad_input(search_run):
    from neuronscope import search as search_mod

    expl = search_run / "explanations.jsonl"
    search_mod.build_index(expl, search_run / "search")
    expl.write_text(expl.read_text() + "\n")
    assert not search_mod.index_is_current(expl, search_run / "search")
    with pytest.raises(ConfigError, match="empty"):
        search_mod.search("   ", search_run)
    with pytest.raises(StoreError, match="no search index"):
        search_mod.search("x", search_run / "nowhere")
    (search_run / "search" / "entries.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt"):
        search_mod.search("x", search_run)
    with pytest.raises(ConfigError, match="no modes of method 'single-pass'"):
        search_mod.build_index(expl, search_run / "s2", method="single-pass")
