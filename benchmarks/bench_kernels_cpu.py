"""Batched correlation on the CPU: ``pearson`` (its PyTorch path) against a per-candidate numpy loop.

Run: ``python -m pytest benchmarks/bench_kernels_cpu.py --benchmark-enable -s`` (``-s`` shows the ratios).
E = 512 candidate predictions (0/1 condition masks, or float simulations) against one neuron's T = 32,768
activations; the baseline computes ``np.corrcoef(pred[e], true)[0, 1]`` row by row, as a scorer without a
batched kernel would. Budget (DESIGN.md, for exec scoring + correlation): >= 20x the loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from neuronscope.kernels.corr import pearson

E, T = 512, 32768
_medians: dict[str, float] = {}


@pytest.fixture(scope="module", params=["bool", "float32"])
def data(request) -> tuple[str, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(T, generator=gen).exp()
    if request.param == "bool":
        pred = torch.rand(E, T, generator=gen) < 0.1
    else:
        pred = torch.rand(E, T, generator=gen) * 10
    return request.param, pred, true


def _loop(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(row, true)[0, 1] for row in pred])


def _record(benchmark, name: str, kind: str) -> None:
    if benchmark.stats is None:  # --benchmark-disable: ran once, untimed
        return
    _medians[f"{name}/{kind}"] = benchmark.stats.stats.median
    loop, ours = _medians.get(f"numpy_loop/{kind}"), _medians.get(f"pearson/{kind}")
    if loop is not None and ours is not None:
        benchmark.extra_info["speedup_vs_numpy_loop"] = loop / ours
        print(f"\n[{kind}] pearson {ours * 1e3:.1f} ms, numpy loop {loop * 1e3:.1f} ms: {loop / ours:.1f}x")


def test_numpy_loop(benchmark, data):
    kind, pred, true = data
    p, t = pred.numpy(), true.numpy()
    out = benchmark(_loop, p, t)
    assert out.shape == (E,)
    _record(benchmark, "numpy_loop", kind)


def test_pearson(benchmark, data, monkeypatch):
    kind, pred, true = data
    monkeypatch.setenv("NEURONSCOPE_BACKEND", "ref")
    out = benchmark(pearson, pred, true)
    np.testing.assert_allclose(out.numpy(), _loop(pred.numpy(), true.numpy()), atol=1e-5)
    _record(benchmark, "pearson", kind)
