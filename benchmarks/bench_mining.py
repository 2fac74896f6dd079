"""Mining throughput against a bare forward of the same model, in the same run (CPU, MiniLM + pydoc).

    python -m pytest benchmarks/bench_mining.py --benchmark-enable -q -s

Prints tokens/s for the bare forward and for mining with each available backend, and the ratio
(target on CPU: >= 0.8 of the bare forward), and writes benchmarks/results/mining_cpu.json.
Steady state: the statistics are warmed by one pass first, as they are after the first few batches
of a long corpus.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pytest
import torch

from neuronscope.corpus import CorpusSpec, build_token_store
from neuronscope.corpus.packing import make_packing
from neuronscope.mining import LayerStats, MiningConfig
from neuronscope.mining.backend import resolve_backend
from neuronscope.models import load_subject
from neuronscope.models.hooks import neuron_hooks

TOKENS = int(os.environ.get("NEURONSCOPE_BENCH_TOKENS", "16384"))
RESULTS: dict = {}


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(os.cpu_count() or 1)
    subject = load_subject("minilm")
    tmp = tempfile.mkdtemp()
    ts, _ = build_token_store(CorpusSpec("pydoc"), subject.tokenizer, Path(tmp) / "tok", max_tokens=TOKENS)
    pk = make_packing(subject.tokenizer, subject.model.config, 256, "stream")
    starts, lengths = pk.sequences(ts)
    per = 8192 // pk.seq_len
    batches = [pk.batch(ts, starts[i : i + per], lengths[i : i + per]) for i in range(0, len(starts), per)]
    return subject, batches, int(lengths.sum())


def _bare(subject, batches):
    with torch.inference_mode():
        for ids, mask, _, _ in batches:
            subject.model(input_ids=ids, attention_mask=mask)


def _mined(subject, batches, miner, stats, cfg):
    ctx = {}

    def on_layer(layer, acts):
        flat = acts.reshape(-1, acts.shape[-1]).index_select(0, ctx["index"])
        miner(stats[layer], flat, ctx["positions"], layer * subject.n_neurons, cfg)

    with torch.inference_mode(), neuron_hooks(subject, list(range(subject.n_layers)), on_layer):
        for ids, mask, index, positions in batches:
            ctx["index"], ctx["positions"] = index, positions
            subject.model(input_ids=ids, attention_mask=mask)


def _time(fn, rounds=3) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.parametrize("backend", ["cpu", "ref"])
def test_mining_vs_bare_forward(benchmark, setup, backend):
    subject, batches, n_tokens = setup
    try:
        name, miner = resolve_backend(backend, "cpu")
    except Exception as e:  # the compiled CPU miner may be absent
        pytest.skip(str(e))
    cfg = MiningConfig()
    stats = {layer: LayerStats.empty(subject.n_neurons, cfg) for layer in range(subject.n_layers)}
    _mined(subject, batches, miner, stats, cfg)  # warm the thresholds (steady state)
    bare_s = _time(lambda: _bare(subject, batches))
    mined_s = _time(lambda: _mined(subject, batches, miner, stats, cfg))
    benchmark.pedantic(lambda: _mined(subject, batches, miner, stats, cfg), rounds=1, iterations=1)
    ratio = bare_s / mined_s
    benchmark.extra_info.update(bare_tokens_per_s=n_tokens / bare_s, mined_tokens_per_s=n_tokens / mined_s,
                                ratio=ratio)
    RESULTS[name] = {"bare_tokens_per_s": round(n_tokens / bare_s, 1),
                     "mined_tokens_per_s": round(n_tokens / mined_s, 1), "ratio_to_bare": round(ratio, 3)}
    print(f"\n[{name}] bare {n_tokens / bare_s:,.0f} tok/s, mining {n_tokens / mined_s:,.0f} tok/s, ratio {ratio:.3f}")
    out = Path(__file__).parent / "results" / "mining_cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "model": "all-MiniLM-L6-v2 (6 layers x 1536 neurons, all mined)", "tokens": n_tokens,
        "seq_len": 256, "batch_tokens": 8192, "torch": torch.__version__, "backends": RESULTS,
    }, indent=2) + "\n")
