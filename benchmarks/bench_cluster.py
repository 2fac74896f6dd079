"""Clustering benchmarks: batched average linkage against a scipy loop, faiss k-means against ours.

    python -m pytest benchmarks/bench_cluster.py --benchmark-enable

Sizes (environment): NEURONSCOPE_BENCH_PROBLEMS (10000) x NEURONSCOPE_BENCH_POINTS (256) x
NEURONSCOPE_BENCH_DIM (384), every problem also run by scipy (the linkage comparison is
``neuronscope.bench.cores.bench_cluster``, as in ``neuronscope bench``); NEURONSCOPE_BENCH_KMEANS_POINTS
(200000) for the single large k-means problem. Ratios are printed at the end and written to
benchmarks/results/cluster.json; nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from neuronscope import cluster, native

_core = native.core()  # the extension itself: its SIMD level goes into the results

B = int(os.environ.get("NEURONSCOPE_BENCH_PROBLEMS", 10_000))
N = int(os.environ.get("NEURONSCOPE_BENCH_POINTS", 256))
D = int(os.environ.get("NEURONSCOPE_BENCH_DIM", 384))
KMEANS_POINTS = int(os.environ.get("NEURONSCOPE_BENCH_KMEANS_POINTS", 200_000))
THRESHOLD = 0.9  # cosine distance cut, the same for both sides
THREADS = os.cpu_count() or 1
RESULTS: dict[str, float | int | str] = {}


def modes(rng: np.random.Generator, n_problems: int, n: int, d: int) -> np.ndarray:
    """(n_problems * n, d) float32: per problem 1-4 random directions ("modes") plus noise."""
    out = np.empty((n_problems * n, d), dtype=np.float32)
    for p in range(n_problems):
        centers = rng.standard_normal((int(rng.integers(1, 5)), d), dtype=np.float32)
        rows = out[p * n : (p + 1) * n]
        rng.standard_normal(rows.shape, dtype=np.float32, out=rows)
        rows += 1.5 * centers[rng.integers(0, len(centers), n)]
    return out


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    report(request.config)


@pytest.fixture(scope="module")
def batch():
    features = modes(np.random.default_rng(0), B, N, D)
    return features, np.arange(0, B * N + 1, N, dtype=np.int64)


def timed(benchmark, fn, rounds: int) -> tuple[float, object]:
    """Best wall time of `rounds` runs of fn (also recorded by pytest-benchmark when enabled)."""
    best, out = float("inf"), None

    def run():
        nonlocal best, out
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    if best == float("inf"):  # --benchmark-disable runs the function once, and only once
        run()
    return best, out


def test_hierarchical_vs_scipy_loop(benchmark):
    """Same function as `neuronscope bench`'s clustering section: every problem run by scipy too."""
    from neuronscope.bench.cores import bench_cluster

    out = {}
    benchmark.pedantic(lambda: out.update(bench_cluster(problems=B, points=N, dim=D, threshold=THRESHOLD,
                                                        threads=THREADS, progress=False)), rounds=1, iterations=1)
    RESULTS.update({f"linkage_{k}": v for k, v in out.items()})


def test_hierarchical_auto_core(benchmark, batch):
    features, offsets = batch
    seconds, result = timed(benchmark, lambda: cluster.hierarchical(features, offsets, n_threads=THREADS), rounds=1)
    RESULTS.update(auto_seconds=seconds, auto_mean_clusters=float(result.n_clusters.mean()))


def test_kmeans_large_core(benchmark):
    x = modes(np.random.default_rng(1), 1, KMEANS_POINTS, D)
    seconds, r = timed(benchmark, lambda: cluster.kmeans(x, 16, n_init=1, max_iter=20, backend="core",
                                                         n_threads=THREADS), rounds=1)
    RESULTS.update(kmeans_points=KMEANS_POINTS, kmeans_core_seconds=seconds, kmeans_core_inertia=float(r.inertia[0]))


def test_kmeans_large_faiss(benchmark):
    pytest.importorskip("faiss")
    x = modes(np.random.default_rng(1), 1, KMEANS_POINTS, D)
    seconds, r = timed(benchmark, lambda: cluster.kmeans(x, 16, n_init=1, max_iter=20, backend="faiss",
                                                         n_threads=THREADS), rounds=1)
    RESULTS.update(kmeans_faiss_seconds=seconds, kmeans_faiss_inertia=float(r.inertia[0]))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def report(config) -> None:
    r = {k: v for k, v in RESULTS.items() if not k.startswith("_")}
    if "kmeans_core_seconds" in r and "kmeans_faiss_seconds" in r:
        r["faiss_speedup_vs_core"] = r["kmeans_core_seconds"] / r["kmeans_faiss_seconds"]
        r["faiss_inertia_ratio"] = r["kmeans_faiss_inertia"] / r["kmeans_core_inertia"]
    from neuronscope.bench.common import machine

    r["machine"] = machine()
    out = Path(__file__).parent / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    lines = [f"clustering benchmark ({out}):"]
    lines += [f"  {k:28s} {v:.4g}" if isinstance(v, float) else f"  {k:28s} {v}" for k, v in r.items()]
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        print("\n" + "\n".join(lines))
