"""Batched Pearson correlation (reference and Triton kernel) against numpy's corrcoef, and the dispatch."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from triton_required import kernel_device, unavailable

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from neuronscope.kernels import corr as kc
from neuronscope.kernels.corr import corr_ref, corr_triton, pearson

from neuronscope.errors import ConfigError

PRED_DTYPES = [torch.bool, torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32]


def corrcoef(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """numpy's Pearson r for every (pred row, true row), float64; rows without variance → 0.0."""
    out = np.zeros((pred.shape[0], true.shape[0]))
    with np.errstate(all="ignore"):
        for i, p in enumerate(pred.astype(np.float64)):
            for j, t in enumerate(true.astype(np.float64)):
                r = np.corrcoef(p, t)[0, 1]
                out[i, j] = 0.0 if np.isnan(r) else r
    return out


def make(e: int, t: int, m: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions correlated with heavy-tailed, offset true activations; some rows constant."""
    gen = torch.Generator().manual_seed(seed)
    true = torch.randn(m, t, generator=gen).exp() * 2 - 0.5  # skewed, like post-GELU activations
    true[0] = 0.75  # a dead neuron
    mix = torch.rand(e, m, generator=gen)
    score = mix @ true + torch.randn(e, t, generator=gen) * 3
    if dtype in (torch.bool, torch.uint8, torch.int32):
        pred = (score > score.quantile(0.8, dim=1, keepdim=True)).to(dtype)
        pred[1] = 0  # a condition that never fires
        pred[2] = 1  # one that always fires
    else:
        pred = (score + 100.0).to(dtype)  # a large offset: the shifted sums keep full precision
        pred[1] = 3.25
    return pred, true


@pytest.fixture(scope="module")
def interpreted() -> None:
    """The Triton tests need the kernel (the reference's need nothing): skip without it, or fail when required."""
    if kc.triton is None:
        unavailable("triton is not importable (pip install triton)")
    kernel_device(kc._corr_kernel)


@pytest.mark.parametrize("dtype", PRED_DTYPES)
@pytest.mark.parametrize("impl", ["ref", "triton"])
def test_matches_numpy_corrcoef(request, impl, dtype):
    if impl == "triton":
        request.getfixturevalue("interpreted")
    fn = corr_ref if impl == "ref" else corr_triton
    dev = "cuda" if impl == "triton" and torch.cuda.is_available() else "cpu"
    pred, true = make(37, 3001, 19, dtype)
    want = corrcoef(pred.float().numpy(), true.numpy())
    got = fn(pred.to(dev), true.to(dev)).cpu()
    assert got.shape == (37, 19)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=0)
    assert not bool(got[1].any()), "a constant prediction must score 0"
    assert not bool(got[:, 0].any()), "a constant neuron must score 0"
    one = fn(pred.to(dev), true[3].to(dev)).cpu()  # a single true row: (E,)
    assert one.shape == (37,)
    np.testing.assert_allclose(one.numpy(), want[:, 3], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fn", [corr_ref, corr_triton])
def test_long_rows_and_small_blocks(request, fn, monkeypatch):
    """Many blocks over T (and, for the reference, over E) accumulate to the same result."""
    if fn is corr_triton:
        request.getfixturevalue("interpreted")
    monkeypatch.setattr(kc, "_BLOCK_ROWS", 8)
    monkeypatch.setattr(kc, "_BLOCK_ELEMS", 8 * 1024)
    pred, true = make(21, 20011, 1, torch.float32, seed=3)
    dev = "cuda" if fn is corr_triton and torch.cuda.is_available() else "cpu"
    got = fn(pred.to(dev), true[0].to(dev)).cpu()
    np.testing.assert_allclose(got.numpy(), corrcoef(pred.numpy(), true.numpy())[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fn", [corr_ref, corr_triton])
@pytest.mark.parametrize("t", [0, 1, 2])
def test_degenerate_lengths_give_zero_not_nan(request, fn, t):
    if fn is corr_triton:
        request.getfixturevalue("interpreted")
    pred = torch.arange(3 * t, dtype=torch.float32).reshape(3, t)
    true = torch.arange(t, dtype=torch.float32)
    got = fn(pred, true)
    assert got.shape == (3,)
    assert bool(torch.isfinite(got).all())
    if t < 2:
        assert not bool(got.any())
    else:
        torch.testing.assert_close(got, torch.ones(3))


def test_dispatch(monkeypatch):
    calls = []
    monkeypatch.setattr(kc, "corr_ref", lambda p, t: calls.append("ref") or torch.zeros(p.shape[0]))
    monkeypatch.setattr(kc, "corr_triton", lambda p, t: calls.append("triton") or torch.zeros(p.shape[0]))
    pred, true = torch.zeros(2, 5, dtype=torch.bool), torch.zeros(5)
    monkeypatch.delenv("NEURONSCOPE_BACKEND", raising=False)
    kc.pearson(pred, true)  # CPU tensors: the reference
    monkeypatch.setenv("NEURONSCOPE_BACKEND", "triton")
    kc.pearson(pred, true)
    monkeypatch.setenv("NEURONSCOPE_BACKEND", "ref")
    kc.pearson(pred, true)
    assert calls == ["ref", "triton", "ref"]
    monkeypatch.setenv("NEURONSCOPE_BACKEND", "fast")
    with pytest.raises(ConfigError, match="NEURONSCOPE_BACKEND"):
        kc.pearson(pred, true)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="pred must be"):
        pearson(torch.zeros(5), torch.zeros(5))
    with pytest.raises(ConfigError, match="true must be"):
        pearson(torch.zeros(2, 5), torch.zeros(4))
    with pytest.raises(ConfigError, match="pred must be a real"):
        pearson(torch.zeros(2, 5, dtype=torch.complex64), torch.zeros(5))
    with pytest.raises(ConfigError, match="true must be a floating"):
        pearson(torch.zeros(2, 5), torch.zeros(5, dtype=torch.int64))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", PRED_DTYPES)
def test_cuda_matches_numpy(dtype):
    pred, true = make(300, 65537, 33, dtype, seed=5)
    want = corrcoef(pred.float().numpy()[:40], true.numpy())
    got = corr_triton(pred.cuda(), true.cuda()).cpu()
    np.testing.assert_allclose(got[:40].numpy(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got, corr_ref(pred, true), atol=1e-5, rtol=0)
