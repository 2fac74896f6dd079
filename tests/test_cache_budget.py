"""The layer activation cache is sized from the memory available, not a fixed size, and when every layer
does not fit, the stages go one layer at a time — with the same results as with everything cached."""

from __future__ import annotations

import numpy as np
import pytest

from neuronscope import activations as acts
from neuronscope.activations import SubjectActivations, cache_budget
from neuronscope.errors import StoreError
from neuronscope.stage import Stage, run_stage


def test_budget_follows_available_memory_and_the_override(monkeypatch):
    monkeypatch.delenv("NEURONSCOPE_CACHE_BYTES", raising=False)
    monkeypatch.setattr(acts, "available_memory_bytes", lambda: 8 << 30)
    assert cache_budget() == 4 << 30
    monkeypatch.setattr(acts, "available_memory_bytes", lambda: 1 << 30)
    assert cache_budget() == 512 << 20
    assert cache_budget(123) == 123
    monkeypatch.setenv("NEURONSCOPE_CACHE_BYTES", "2e6")
    assert cache_budget() == 2_000_000
    monkeypatch.setenv("NEURONSCOPE_CACHE_BYTES", "lots")
    with pytest.raises(StoreError, match="NEURONSCOPE_CACHE_BYTES"):
        cache_budget()


def test_available_memory_is_read_from_the_kernel():
    import os

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < acts.available_memory_bytes() <= total


def _layer_bytes(store) -> int:
    _starts, lengths = store.sequences
    return int(lengths.sum()) * store.n_neurons * 4


def test_cache_that_does_not_fit_caches_nothing_and_one_layer_fits(minilm_store, minilm):
    one = _layer_bytes(minilm_store)
    src = SubjectActivations(minilm_store, minilm, max_cache_bytes=int(1.5 * one))
    assert src.prepare(minilm_store.layers) is False
    assert not src.is_lookup(1)
    assert src.prepare([1]) is True
    assert src.is_lookup(1)
    assert not src.is_lookup(3)
    assert src.prepare([3]) is True
    assert src.is_lookup(3)
    assert not src.is_lookup(1)


def test_screen_one_layer_at_a_time_equals_all_cached(minilm_store, minilm):
    from neuronscope.screen import screen

    big = screen(minilm_store, activations=SubjectActivations(minilm_store, minilm, max_cache_bytes=1 << 40))
    small_src = SubjectActivations(minilm_store, minilm, max_cache_bytes=int(1.5 * _layer_bytes(minilm_store)))
    calls = []
    real = small_src.prepare

    def spy(layers):
        calls.append(sorted([layers] if isinstance(layers, int) else layers))
        return real(layers)

    small_src.prepare = spy  # type: ignore[method-assign]
    small = screen(minilm_store, activations=small_src)
    assert calls == [[1, 3], [1], [3]]
    assert [r.to_dict() for r in small] == [r.to_dict() for r in big]


def test_stage_prepares_per_layer_when_the_whole_cache_does_not_fit(tmp_path):
    prepared, seen = [], []

    async def compute(layer, indices, todo, emit):
        seen.append((layer, prepared[-1]))
        for i in indices:
            emit({"layer": layer, "index": i})

    def prepare(layers):
        prepared.append(list(layers))
        return len(layers) == 1  # only one layer at a time fits

    st = Stage(what="a toy file", row_key=lambda r: (r["layer"], r["index"]), compute=compute, chunk=2,
               keys=lambda layer, i: [(layer, i)], prepare=prepare)
    run_stage(st, tmp_path / "o.jsonl", [(0, 0), (0, 1), (0, 2), (2, 0)], progress=False)
    assert prepared == [[0, 2], [0], [2]]
    assert seen == [(0, [0]), (0, [0]), (2, [2])]  # every chunk ran with its own layer cached


def test_cached_lookups_equal_recomputation(minilm_store, minilm):
    src = SubjectActivations(minilm_store, minilm)
    pos = np.asarray(minilm_store.stats(1).topk_positions[:4, :3].numpy()).ravel()
    cold = src.at(1, [0, 1, 2, 3], pos)
    assert src.prepare([1])
    np.testing.assert_allclose(src.at(1, [0, 1, 2, 3], pos), cold, rtol=1e-5, atol=1e-5)
