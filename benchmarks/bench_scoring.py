"""Scoring benchmark: 10,000 candidate token-set conditions over 1,000,000 tokens, batched vs a numpy loop.

    python -m pytest benchmarks/bench_scoring.py --benchmark-enable -q -s

The tokens are all-MiniLM-L6-v2 tokens of the pydoc corpus (repeated to the size asked), cut into
evidence windows of 500 tokens; activations are a planted neuron plus noise. Candidates: 80% ``token``
sets of 1-5 tokens, 20% ``prev_token`` sets (offset 1-3). Baseline: per candidate, the 0/1 prediction by
indexing a precomputed vocabulary mask, then ``np.corrcoef`` (mask construction is not charged to it;
ours is timed from the conditions, masks included). The loop runs NEURONSCOPE_BENCH_LOOP (300) candidates
and is extrapolated linearly to all (the JSON says so). Both give the same r (max |diff| is reported).
Sizes: NEURONSCOPE_BENCH_CANDIDATES (10000), NEURONSCOPE_BENCH_TOKENS (1000000).
Results: benchmarks/results/scoring_cpu.json. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuronscope.explanations import ConditionEvaluator, PrevTokenIn, TokenIn, Vocab
from neuronscope.scoring import Window, WindowBatch, score_conditions

C = int(os.environ.get("NEURONSCOPE_BENCH_CANDIDATES", 10_000))
T = int(os.environ.get("NEURONSCOPE_BENCH_TOKENS", 1_000_000))
LOOP = min(C, int(os.environ.get("NEURONSCOPE_BENCH_LOOP", 300)))
WINDOW = 500
RESULTS: dict[str, float | int | str | bool] = {}


@pytest.fixture(scope="module")
def data():
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer

    from neuronscope.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    ids = np.resize(ids, T)
    vocab = Vocab.from_tokenizer(tok)
    rng = np.random.default_rng(0)
    acts = rng.normal(0, 0.1, T).astype(np.float32)
    acts[np.isin(ids, tok.convert_tokens_to_ids(["return", "value", "function"]))] += 2.0
    windows = [Window(ids=ids[a : a + WINDOW], acts=acts[a : a + WINDOW], kind="random")
               for a in range(0, T, WINDOW)]
    batch = WindowBatch.build(windows)
    frequent = np.unique(ids)
    conds = []
    for i in range(C):
        toks = tuple(vocab.pieces[j] for j in rng.choice(frequent, size=int(rng.integers(1, 6)), replace=False))
        conds.append(PrevTokenIn(toks, offset=int(rng.integers(1, 4))) if i % 5 == 4 else TokenIn(toks))
    return vocab, batch, conds


def test_batched(benchmark, data):
    vocab, batch, conds = data

    def run():
        return score_conditions(ConditionEvaluator(vocab), conds, batch)

    t0 = time.perf_counter()
    res = benchmark.pedantic(run, rounds=1, iterations=1) if benchmark.enabled else run()
    RESULTS["batched_seconds"] = time.perf_counter() - t0
    RESULTS["_r"] = res.r  # type: ignore[assignment]


def test_numpy_loop(benchmark, data):
    vocab, batch, conds = data
    ev = ConditionEvaluator(vocab)
    ids = batch.ids.numpy()
    seg = batch.seg.numpy()
    y = batch.acts.numpy()
    masks = [ev.vocab_mask(c) for c in conds[:LOOP]]
    shifted = {}
    for k in (1, 2, 3):
        prev = np.zeros_like(ids)
        prev[k:] = ids[:-k]
        valid = np.zeros(len(ids), bool)
        valid[k:] = seg[k:] == seg[:-k]
        shifted[k] = (prev, valid)

    def run():
        out = np.zeros(LOOP)
        for i, c in enumerate(conds[:LOOP]):
            if isinstance(c, PrevTokenIn):
                prev, valid = shifted[c.offset]
                x = masks[i][prev] & valid
            else:
                x = masks[i][ids]
            out[i] = np.corrcoef(x, y)[0, 1] if x.any() and not x.all() else 0.0
        return out

    t0 = time.perf_counter()
    r = benchmark.pedantic(run, rounds=1, iterations=1) if benchmark.enabled else run()
    seconds = time.perf_counter() - t0
    RESULTS.update(loop_candidates=LOOP, loop_seconds=seconds, loop_seconds_all=seconds * C / LOOP,
                   loop_extrapolated=LOOP < C)
    if "_r" in RESULTS:
        RESULTS["max_abs_r_diff"] = float(np.abs(np.asarray(RESULTS["_r"])[:LOOP] - r).max())


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    r = {k: v for k, v in RESULTS.items() if not k.startswith("_")}
    r.update(candidates=C, tokens=T, threads=torch.get_num_threads(), machine=platform.machine(),
             cpus=os.cpu_count(), device="cpu")
    if "batched_seconds" in r and "loop_seconds_all" in r:
        r["speedup_vs_numpy_loop"] = r["loop_seconds_all"] / r["batched_seconds"]
        r["pairs_per_second"] = C * T / r["batched_seconds"]
    out = Path(__file__).parent / "results" / "scoring_cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nscoring benchmark ({out}):")
        for k, v in r.items():
            print(f"  {k:24s} {v:.4g}" if isinstance(v, float) else f"  {k:24s} {v}")
