"""Mining throughput: fresh corpus tokens through ``mine()`` itself against a bare forward of the same model
in the same run, early phase (top-k inserts frequent) and steady state. The same function as
``neuronscope bench``'s mining section (``neuronscope.bench.mining``).

    python -m pytest benchmarks/bench_mining.py --benchmark-enable -q -s

Sizes: NEURONSCOPE_BENCH_TOKENS (131072, the pydoc corpus is ~128k MiniLM tokens), NEURONSCOPE_BENCH_EARLY
(16384), NEURONSCOPE_BENCH_MODEL (minilm). Writes benchmarks/results/mining_cpu.json; asserts no time.
"""

from __future__ import annotations

import os

from _results import write
from neuronscope.bench.mining import bench_mining

TOKENS = int(os.environ.get("NEURONSCOPE_BENCH_TOKENS", 131072))
EARLY = int(os.environ.get("NEURONSCOPE_BENCH_EARLY", 16384))
MODEL = os.environ.get("NEURONSCOPE_BENCH_MODEL", "minilm")


def test_mining_vs_bare_forward(benchmark, tmp_path):
    out = {}

    def run():
        out.update(bench_mining(MODEL, tmp_path / "w", tokens=TOKENS, early_tokens=EARLY, progress=False))

    benchmark.pedantic(run, rounds=1, iterations=1)
    write(f"mining_{'cpu' if MODEL == 'minilm' else MODEL}.json", {"mining": {MODEL: out}})
