"""Batched condition scoring vs a per-candidate numpy loop, both run over every candidate (nothing is
extrapolated) and giving the same r. Same function as ``neuronscope bench``'s scoring section.

    python -m pytest benchmarks/bench_scoring.py --benchmark-enable -q -s

Sizes: NEURONSCOPE_BENCH_CANDIDATES (10000), NEURONSCOPE_BENCH_TOKENS (1000000). Writes
benchmarks/results/scoring_cpu.json; asserts no time.
"""

from __future__ import annotations

import os

from _results import write
from neuronscope.bench.cores import bench_scoring

C = int(os.environ.get("NEURONSCOPE_BENCH_CANDIDATES", 10_000))
T = int(os.environ.get("NEURONSCOPE_BENCH_TOKENS", 1_000_000))


def test_batched_vs_numpy_loop(benchmark):
    out = {}
    benchmark.pedantic(lambda: out.update(bench_scoring(candidates=C, tokens=T, progress=False)), rounds=1,
                       iterations=1)
    write("scoring_cpu.json", {"scoring": out})
