"""The compute cores against the obvious way to do the same job, each measured whole in the same run:

* the C++ CPU miner against the PyTorch reference miner (``mining.reference``), on batches of fresh
  activations at fresh corpus positions: the first batch into empty statistics (every token an insert)
  and the steady state after a warm-up;
* batched condition scoring against a per-candidate numpy loop (both produce every candidate's Pearson r;
  the loop runs over every candidate, nothing is extrapolated);
* batched average-linkage clustering against a scipy ``linkage`` + ``fcluster`` loop (partitions compared).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from .common import Steps, skipped


def bench_miner(*, tokens: int = 4096, neurons: int = 1536, batches: int = 12, warmup: int = 4,
                threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """ms per batch of the C++ miner and the reference on ``(tokens, neurons)`` GELU-like batches.

    Every batch is new (values drawn afresh, positions continuing the corpus); drawing is not timed.
    Returns per miner ``{"first_batch_ms", "steady_ms", "steady_tokens_per_s"}`` and the speed-ups.
    """
    import torch

    from .. import native
    from ..mining import LayerStats, MiningConfig, mine_ref

    if not native.available():
        return skipped(f"compiled miner unavailable: {native.unavailable_reason()}")
    from ..mining.cpu import mine_cpu
    from .common import usable_cpus

    threads = threads or usable_cpus()
    cfg = MiningConfig()
    gen = torch.Generator().manual_seed(0)
    scale = torch.rand(neurons, generator=gen) * 2 + 0.2
    bias = torch.randn(neurons, generator=gen)
    miners = {"reference": mine_ref,
              "cpp": lambda st, a, p, off, c: mine_cpu(st, a, p, off, c, threads=threads)}
    out: dict[str, Any] = {"tokens_per_batch": tokens, "neurons": neurons, "batches": batches, "warmup": warmup,
                           "threads": threads, "mining_config": cfg.to_dict()}
    steps = Steps("bench miner", len(miners), progress)
    try:
        for name, fn in miners.items():
            st = LayerStats.empty(neurons, cfg)
            times = []
            for b in range(warmup + batches):
                acts = torch.nn.functional.gelu(torch.randn(tokens, neurons, generator=gen) * scale + bias)
                pos = torch.arange(b * tokens, (b + 1) * tokens)
                t = time.perf_counter()
                fn(st, acts, pos, 0, cfg)
                times.append(time.perf_counter() - t)
            steady = statistics.median(times[warmup:])
            out[name] = {"first_batch_ms": round(times[0] * 1e3, 2), "steady_ms": round(steady * 1e3, 2),
                         "steady_tokens_per_s": round(tokens / steady, 1)}
            steps(name)
    finally:
        steps.close()
    out["speedup_steady"] = round(out["reference"]["steady_ms"] / out["cpp"]["steady_ms"], 2)
    out["speedup_first_batch"] = round(out["reference"]["first_batch_ms"] / out["cpp"]["first_batch_ms"], 2)
    return out


def bench_scoring(*, candidates: int = 2000, tokens: int = 1_000_000, window: int = 500,
                  progress: bool = True) -> dict[str, Any]:
    """(candidate, token) pairs/s of batched scoring vs a per-candidate numpy loop over all candidates.

    Tokens are all-MiniLM-L6-v2 tokens of the pydoc corpus (repeated to ``tokens``) cut into windows;
    activations are a planted neuron plus noise. Candidates: 80% ``token`` sets of 1-5 tokens, 20%
    ``prev_token`` sets (offset 1-3). The loop indexes a precomputed vocabulary mask per candidate (mask
    construction is not charged to it; the batched side is timed from the conditions, masks included).
    """
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer

    from ..explanations import ConditionEvaluator, PrevTokenIn, TokenIn, Vocab
    from ..models import resolve_model_path
    from ..scoring import Window, WindowBatch, score_conditions

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids = np.resize(np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64), tokens)
    vocab = Vocab.from_tokenizer(tok)
    rng = np.random.default_rng(0)
    acts = rng.normal(0, 0.1, tokens).astype(np.float32)
    acts[np.isin(ids, tok.convert_tokens_to_ids(["return", "value", "function"]))] += 2.0
    batch = WindowBatch.build([Window(ids=ids[a : a + window], acts=acts[a : a + window], kind="random")
                               for a in range(0, tokens, window)])
    frequent = np.unique(ids)
    conds = []
    for i in range(candidates):
        toks = tuple(vocab.pieces[j] for j in rng.choice(frequent, size=int(rng.integers(1, 6)), replace=False))
        conds.append(PrevTokenIn(toks, offset=int(rng.integers(1, 4))) if i % 5 == 4 else TokenIn(toks))
    steps = Steps("bench scoring", 2, progress)
    try:
        t = time.perf_counter()
        res = score_conditions(ConditionEvaluator(vocab), conds, batch)
        batched_s = time.perf_counter() - t
        steps("batched")
        r_loop, loop_s = _numpy_loop(ConditionEvaluator(vocab), conds, batch)
        steps("numpy loop")
    finally:
        steps.close()
    pairs = candidates * int(batch.ids.numel())
    return {"candidates": candidates, "tokens": int(batch.ids.numel()), "window": window,
            "batched_seconds": round(batched_s, 4), "loop_seconds": round(loop_s, 3),
            "loop_candidates_timed": candidates, "extrapolated": False,
            "batched_pairs_per_s": pairs / batched_s, "loop_pairs_per_s": pairs / loop_s,
            "speedup": round(loop_s / batched_s, 1),
            "max_abs_r_diff": float(np.abs(np.asarray(res.r, dtype=np.float64) - r_loop).max())}


def _numpy_loop(ev, conds, batch) -> tuple[np.ndarray, float]:
    from ..explanations import PrevTokenIn

    ids, seg, y = batch.ids.numpy(), batch.seg.numpy(), batch.acts.numpy()
    masks = [ev.vocab_mask(c) for c in conds]
    shifted = {}
    for k in (1, 2, 3):
        prev = np.zeros_like(ids)
        prev[k:] = ids[:-k]
        valid = np.zeros(len(ids), bool)
        valid[k:] = seg[k:] == seg[:-k]
        shifted[k] = (prev, valid)
    out = np.zeros(len(conds))
    t = time.perf_counter()
    for i, c in enumerate(conds):
        if isinstance(c, PrevTokenIn):
            prev, valid = shifted[c.offset]
            x = masks[i][prev] & valid
        else:
            x = masks[i][ids]
        out[i] = np.corrcoef(x, y)[0, 1] if x.any() and not x.all() else 0.0
    return out, time.perf_counter() - t


def bench_cluster(*, problems: int = 2000, points: int = 256, dim: int = 384, threshold: float = 0.9,
                  threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Problems/s of the batched C++ average linkage vs a scipy loop over every problem (cosine, cut at
    ``threshold``); ``identical_partitions`` counts problems where both give the same partition."""
    from .. import cluster, native

    if not native.available():
        return skipped(f"compiled core unavailable: {native.unavailable_reason()}")
    try:
        from scipy.cluster.hierarchy import fcluster, linkage
    except ImportError:
        return skipped("scipy is not installed (pip install scipy)")
    rng = np.random.default_rng(0)
    feats = np.empty((problems * points, dim), dtype=np.float32)
    for p in range(problems):  # per problem 1-4 directions ("modes") plus noise
        centers = rng.standard_normal((int(rng.integers(1, 5)), dim), dtype=np.float32)
        rows = feats[p * points : (p + 1) * points]
        rng.standard_normal(rows.shape, dtype=np.float32, out=rows)
        rows += 1.5 * centers[rng.integers(0, len(centers), points)]
    offsets = np.arange(0, problems * points + 1, points, dtype=np.int64)
    steps = Steps("bench clustering", 2, progress)
    try:
        t = time.perf_counter()
        ours = cluster.hierarchical(feats, offsets, threshold=threshold, n_threads=threads).labels
        core_s = time.perf_counter() - t
        steps("C++ batched")
        t = time.perf_counter()
        ref = [fcluster(linkage(feats[offsets[b] : offsets[b + 1]], "average", metric="cosine"), threshold,
                        "distance") for b in range(problems)]
        scipy_s = time.perf_counter() - t
        steps("scipy loop")
    finally:
        steps.close()
    same = sum(_same_partition(ours[offsets[b] : offsets[b + 1]], ref[b]) for b in range(problems))
    return {"problems": problems, "points": points, "dim": dim, "threshold": threshold,
            "core_seconds": round(core_s, 3), "scipy_seconds": round(scipy_s, 3),
            "core_problems_per_s": round(problems / core_s, 1), "scipy_problems_per_s": round(problems / scipy_s, 1),
            "speedup": round(scipy_s / core_s, 1), "identical_partitions": same, "extrapolated": False,
            "simd": native.core().simd_level()}


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))
