"""C++ CPU miner vs the PyTorch reference on one MiniLM layer batch: T=4096 tokens x N=1536 neurons.

Run: ``python -m pytest benchmarks/bench_mine_cpu.py --benchmark-enable -s`` (``-s`` shows the ratios).
Both miners are timed in steady state: a few warm-up batches first, so top-k and sample thresholds are
set, then every timed call folds a fresh batch (new token positions) into the same statistics.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from neuronscope import native
from neuronscope.mining import LayerStats, MiningConfig, mine_ref
from neuronscope.mining.cpu import mine_cpu

if not native.available():
    pytest.skip(native.unavailable_reason(), allow_module_level=True)

T, N = 4096, 1536
CFG = MiningConfig(k=64, bottom_k=16, samples_per_stratum=8)
WARMUP = 4
_medians: dict[str, float] = {}


@pytest.fixture(scope="module")
def batches() -> list[torch.Tensor]:
    """Three GELU-MLP-like activation batches (per-neuron scale and bias), cycled by the benchmarks."""
    gen = torch.Generator().manual_seed(0)
    scale = torch.rand(N, generator=gen) * 2 + 0.2
    bias = torch.randn(N, generator=gen)
    return [torch.nn.functional.gelu(torch.randn(T, N, generator=gen) * scale + bias) for _ in range(3)]


def _stream(miner, batches: list[torch.Tensor]):
    """A zero-argument call folding the next batch (at fresh positions) into warmed-up statistics."""
    st = LayerStats.empty(N, CFG)
    step = itertools.count()

    def call() -> None:
        i = next(step)
        miner(st, batches[i % len(batches)], torch.arange(i * T, (i + 1) * T), 0, CFG)

    for _ in range(WARMUP):
        call()
    return call


def _record(benchmark, name: str) -> None:
    if benchmark.stats is None:  # --benchmark-disable: ran once, untimed
        return
    _medians[name] = benchmark.stats.stats.median
    ref = _medians.get("ref")
    if ref is not None and name != "ref":
        benchmark.extra_info["speedup_vs_ref"] = ref / _medians[name]
        print(f"\n{name}: {_medians[name] * 1e3:.2f} ms/batch, {ref / _medians[name]:.1f}x the reference "
              f"({ref * 1e3:.1f} ms/batch)")


def test_reference(benchmark, batches):
    torch.set_num_threads(2)
    benchmark.pedantic(_stream(mine_ref, batches), rounds=5, iterations=1, warmup_rounds=1)
    _record(benchmark, "ref")


@pytest.mark.parametrize("threads", [1, 2])
def test_cpp(benchmark, batches, threads):
    def miner(st, acts, pos, offset, cfg):
        mine_cpu(st, acts, pos, offset, cfg, threads=threads)

    benchmark.pedantic(_stream(miner, batches), rounds=30, iterations=1, warmup_rounds=2)
    _record(benchmark, f"cpp_{threads}_threads")
