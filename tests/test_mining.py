"""Mining: the streaming reference and the whole `mine` pipeline against brute force; resume; merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import DECODERS, tiny_subject
from neuronscope import MiningConfig, StoreError, merge_stores, mine, open_store
from neuronscope.activations import activation_source
from neuronscope.corpus.packing import make_packing
from neuronscope.errors import ConfigError
from neuronscope.mining import LayerStats, merge_stats, mine_ref
from neuronscope.mining.run import _Interrupted, parse_layers
from neuronscope.models.hooks import layer_activations
from oracle import assert_matches, brute_force
from oracle_fast import brute_force_fast
from triton_required import forbid_reference_fallback, import_triton


def stream(acts: np.ndarray, positions: np.ndarray, batch: int, cfg: MiningConfig, offset: int = 0) -> LayerStats:
    st = LayerStats.empty(acts.shape[1], cfg)
    for s in range(0, len(acts), batch):
        mine_ref(st, torch.from_numpy(acts[s : s + batch]), torch.from_numpy(positions[s : s + batch]), offset, cfg)
    return st


@pytest.mark.parametrize(("t", "n", "k", "batch"), [(97, 33, 7, 13), (20, 5, 64, 8), (301, 3, 1, 300)])
def test_reference_equals_brute_force_on_odd_shapes(t, n, k, batch):
    rng = np.random.default_rng(t)
    cfg = MiningConfig(k=k, bottom_k=5, samples_per_stratum=3, seed=t)
    acts = (rng.standard_normal((t, n)) * 10.0 ** rng.integers(-6, 6, size=(1, n))).astype(np.float32)
    acts[rng.random((t, n)) < 0.2] = 0.25  # heavy ties
    acts[:, 0] = 1.0  # all-equal neuron
    acts[rng.random((t, n)) < 0.02] = np.nan
    acts[3 % t, n - 1] = np.inf
    acts[5 % t, n - 1] = -np.inf
    edges = __import__("neuronscope").mining.hist_edges(cfg).numpy()
    acts[7 % t, : min(n, 4)] = edges[[0, 1, 128, 257]][: min(n, 4)]  # exactly on bin edges
    positions = np.sort(rng.choice(10 * t, size=t, replace=False)).astype(np.int64)
    st = stream(acts, positions, batch, cfg, offset=1000)
    assert_matches(st, brute_force(acts, positions, 1000, cfg))


def test_merge_is_exact_in_any_order():
    rng = np.random.default_rng(1)
    cfg = MiningConfig(k=6, bottom_k=2, samples_per_stratum=2)
    acts = rng.standard_normal((200, 9)).astype(np.float32)
    acts[rng.random(acts.shape) < 0.3] = 0.5
    positions = np.arange(200, dtype=np.int64) * 2
    a = stream(acts[120:], positions[120:], 31, cfg)
    b = stream(acts[:120], positions[:120], 50, cfg)
    want = brute_force(acts, positions, 0, cfg)
    assert_matches(merge_stats(a, b, cfg), want)
    assert_matches(merge_stats(b, a, cfg), want)


def capture_all(subject, store, layers):
    """The full activation matrix of every layer, recomputed batch by batch exactly as mined."""
    pk = store.packing
    starts, lengths = pk.sequences(store.tokens)
    per = max(1, 8192 // pk.seq_len)
    acts = {layer: [] for layer in layers}
    pos = []
    for s in range(0, len(starts), per):
        ids, mask, index, positions = pk.batch(store.tokens, starts[s : s + per], lengths[s : s + per])
        out = layer_activations(subject, ids, mask, layers)
        for layer in layers:
            acts[layer].append(out[layer].reshape(-1, out[layer].shape[-1])[index].float().numpy())
        pos.append(positions.numpy())
    return {layer: np.concatenate(v) for layer, v in acts.items()}, np.concatenate(pos)


def test_minilm_pydoc_all_layers_equal_brute_force(tmp_path, minilm):
    cfg = MiningConfig(k=16, samples_per_stratum=2)
    store = mine(minilm, "pydoc", tmp_path / "s", config=cfg, max_tokens=50_000, seq_len=128,
                 batch_tokens=8192, progress=False)
    assert store.n_tokens_seen == 50_000
    assert store.layers == list(range(6))
    acts, positions = capture_all(minilm, store, store.layers)
    assert np.array_equal(positions, np.arange(50_000))
    for layer in store.layers:
        assert_matches(store.stats(layer), brute_force_fast(acts[layer], positions, layer * 1536, cfg),
                       moments_rtol=1e-7)


@pytest.mark.parametrize("arch", DECODERS)
def test_tiny_decoders_equal_brute_force(tmp_path, arch, bpe_tokenizer, sp_tokenizer):
    tok = sp_tokenizer if arch in ("llama", "gemma", "mistral") else bpe_tokenizer
    subject = tiny_subject(arch, tok)
    cfg = MiningConfig(k=9, bottom_k=3, samples_per_stratum=2)
    store = mine(subject, "pydoc", tmp_path / "s", config=cfg, max_tokens=3000, seq_len=61, batch_tokens=500,
                 progress=False)
    if tok is sp_tokenizer:
        assert store.packing.prefix == [1]  # <s> is prepended and never mined
    acts, positions = capture_all(subject, store, [0, 1])
    for layer in (0, 1):
        st = store.stats(layer)
        want = brute_force_fast(acts[layer], positions, layer * 48, MiningConfig(k=9, samples_per_stratum=2))
        want.pop("bottomk_values"), want.pop("bottomk_positions")
        got = LayerStats(**{k: v for k, v in st.to_tensors().items()})
        got.bottomk_values, got.bottomk_positions = torch.zeros(48, 0), torch.zeros(48, 0, dtype=torch.int64)
        assert_matches(got, {**want, "bottomk_values": np.zeros((48, 0), np.float32),
                             "bottomk_positions": np.zeros((48, 0), np.int64)}, moments_rtol=1e-7)
        order = np.lexsort((positions, acts[layer][:, 5]))[:3]
        assert np.array_equal(st.bottomk_positions[5].numpy(), positions[order])


def test_kill_and_resume_gives_identical_store(tmp_path, minilm):
    kw = dict(config=MiningConfig(k=8, samples_per_stratum=2), max_tokens=6000, seq_len=128, batch_tokens=1024,
              layers="1,4", progress=False)
    with pytest.raises(_Interrupted):
        mine(minilm, "pydoc", tmp_path / "a", _stop_after_batches=2, **kw)
    assert not (tmp_path / "a" / "manifest.json").exists()  # not a store until finished
    assert (tmp_path / "a" / "checkpoint" / "manifest.json").exists()
    with pytest.raises(StoreError, match="no manifest"):
        open_store(tmp_path / "a")
    resumed = mine(minilm, "pydoc", tmp_path / "a", **kw)
    fresh = mine(minilm, "pydoc", tmp_path / "b", **kw)
    assert not (tmp_path / "a" / "checkpoint").exists()
    for layer in (1, 4):
        assert resumed.stats(layer).equal(fresh.stats(layer))
    assert resumed.n_tokens_seen == fresh.n_tokens_seen == 6000


def test_store_api_exemplars_and_quantiles(tmp_path, minilm):
    store = mine(minilm, "pydoc", tmp_path / "s", config=MiningConfig(k=5, bottom_k=2), max_tokens=4000,
                 seq_len=128, layers=[3], progress=False)
    rec = store.neuron(3, 17, context=(6, 3), activations=activation_source(store))
    assert len(rec.top) == 5
    assert len(rec.bottom) == 2
    for e in rec.top + rec.bottom:
        assert e.acts is not None
        assert abs(e.acts[e.focus] - e.activation) <= 1e-4 * max(1.0, abs(e.activation))
        d = store.tokens.doc_of(e.position)
        assert store.tokens.doc_of(e.position - e.focus) == d
        assert len(e.tokens) <= 10
    assert [e.activation for e in rec.top] == sorted((e.activation for e in rec.top), reverse=True)
    q = list(rec.quantiles.values())
    assert q == sorted(q)
    assert rec.min <= q[0]
    assert q[-1] <= rec.max
    assert rec.samples
    assert all(e.stratum is not None for e in rec.samples)
    with pytest.raises(StoreError, match="out of range"):
        store.neuron(3, 5000)
    with pytest.raises(StoreError, match="layer 0 not in this store"):
        store.neuron(0, 1)


def test_merge_runs_equals_one_run_and_refuses_overlap(tmp_path, minilm):
    """Two runs over the two halves of the corpus, merged, equal one run over all of it."""
    kw = dict(config=MiningConfig(k=4, samples_per_stratum=1), max_tokens=3000, seq_len=128, batch_tokens=1024,
              layers=[0], progress=False)
    whole = mine(minilm, "pydoc", tmp_path / "whole", **kw)
    with pytest.raises(StoreError, match="overlapping"):
        merge_stores([tmp_path / "whole", tmp_path / "whole"], tmp_path / "bad")
    assert whole.manifest["sequences"] == [[0, len(whole.packing.sequences(whole.tokens)[0])]]

    parts = [mine(minilm, "pydoc", tmp_path / f"part{i}", part=(i, 2), **kw) for i in range(2)]
    (a0, a1), (b0, b1) = parts[0].manifest["sequences"][0], parts[1].manifest["sequences"][0]
    assert a0 == 0 < a1 == b0 < b1 == whole.manifest["sequences"][0][1]  # two disjoint, non-empty halves
    assert 0 < parts[0].n_tokens_seen < whole.n_tokens_seen
    merged = merge_stores([tmp_path / "part1", tmp_path / "part0"], tmp_path / "merged")
    assert merged.manifest["sequences"] == whole.manifest["sequences"]
    assert merged.n_tokens_seen == whole.n_tokens_seen == 3000
    assert merged.manifest["merged_from"] == 2
    assert "part" not in merged.manifest
    assert merged.stats(0).equal(whole.stats(0), moments_rtol=1e-9)  # all exact but mean and M2
    assert not parts[0].stats(0).equal(whole.stats(0), moments_rtol=1e-9)  # a half alone is not the whole
    with pytest.raises(StoreError, match="another configuration"):  # a finished part is not another part
        mine(minilm, "pydoc", tmp_path / "part0", part=(1, 2), **kw)


def test_bad_arguments_are_clear_errors(tmp_path, minilm):
    with pytest.raises(ConfigError, match=r"0\.\.5"):
        parse_layers("2,9", 6)
    with pytest.raises(ConfigError, match="bad layer spec"):
        parse_layers("x", 6)
    with pytest.raises(ConfigError, match="k must be"):
        MiningConfig(k=0)
    with pytest.raises(ConfigError, match="exceeds the model's 512 positions"):
        make_packing(minilm.tokenizer, minilm.model.config, 4096, "stream")
    mine(minilm, "pydoc", tmp_path / "s", max_tokens=500, layers=[0], progress=False)
    with pytest.raises(StoreError, match="another configuration"):
        mine(minilm, "pydoc", tmp_path / "s", max_tokens=500, layers=[0], config=MiningConfig(k=3), progress=False)


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_triton_backend_in_mine_equals_reference(tmp_path, arch, bpe_tokenizer, sp_tokenizer, monkeypatch):
    """``mine(backend="triton")`` (fused gated MLPs, hook elsewhere; interpreted on the CPU) = the reference.

    The fused float32 activation differs from the stock MLP's by at most an ulp, so every statistic is
    compared: the same top-k and bottom-k tokens per neuron (as sets: an ulp may reorder near-ties) with
    values within float32 rounding, counts, histograms and samples identical, min, max, mean and M2 close.
    """
    import_triton()
    forbid_reference_fallback(monkeypatch)  # the kernels ran, not mine_ref behind them
    tok = sp_tokenizer if arch in ("llama", "gemma2") else bpe_tokenizer
    subject = tiny_subject(arch, tok)
    cfg = MiningConfig(k=5, bottom_k=2, samples_per_stratum=2)
    kw = dict(config=cfg, max_tokens=400, seq_len=61, batch_tokens=250, progress=False)
    fused = mine(subject, "pydoc", tmp_path / "t", backend="triton", **kw)
    ref = mine(subject, "pydoc", tmp_path / "r", backend="ref", **kw)
    assert fused.manifest["backend"] == "triton"
    close = dict(rtol=1e-5, atol=1e-6)
    for layer in fused.layers:
        a, b = fused.stats(layer), ref.stats(layer)
        for name in ("count", "nonfinite", "positive", "hist", "sample_positions", "sample_priority"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        for side in ("topk", "bottomk"):
            got, want = getattr(a, f"{side}_positions").tolist(), getattr(b, f"{side}_positions").tolist()
            assert [set(row) for row in got] == [set(row) for row in want], side
            torch.testing.assert_close(getattr(a, f"{side}_values"), getattr(b, f"{side}_values"), **close)
        for name in ("min", "max", "sample_values"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), **close, msg=name)
        torch.testing.assert_close(a.mean, b.mean, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(a.m2, b.m2, rtol=1e-5, atol=1e-6)
