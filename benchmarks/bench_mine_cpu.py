"""C++ CPU miner vs the PyTorch reference: fresh (T=4096, N=1536) GELU-like batches at fresh positions, the
first batch into empty statistics and the steady state after a warm-up. Same function as
``neuronscope bench``'s miner section.

    python -m pytest benchmarks/bench_mine_cpu.py --benchmark-enable -q -s

Writes benchmarks/results/miner_cpu.json; asserts no time.
"""

from __future__ import annotations

import pytest

from _results import write
from neuronscope import native
from neuronscope.bench.cores import bench_miner

if not native.available():
    pytest.skip(native.unavailable_reason(), allow_module_level=True)


def test_cpp_vs_reference(benchmark):
    out = {}
    benchmark.pedantic(lambda: out.update(bench_miner(batches=12, warmup=4, progress=False)), rounds=1,
                       iterations=1)
    write("miner_cpu.json", {"miner": out})
