"""Pearson correlation for scoring: the batched kernel when present, a float64 reference otherwise.

Definition (OpenAI's ``correlation_score`` / ``ev_correlation_score``): Pearson's r between predicted
and true activations over every token pooled together. A constant row (zero variance on either side)
has r = 0: a prediction that does not vary explains nothing, and NaN must not leak into means.
"""

from __future__ import annotations

import numpy as np
import torch


def pearson_ref(pred: torch.Tensor, true: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Pearson r of each row of ``pred (E, T)`` against ``true (T,)`` → ``(E,)``, or ``true (M, T)`` → ``(E, M)``.

    float64 accumulation over chunks of T, so a (10k, 1M) bool ``pred`` never becomes one float matrix.
    """
    single = true.dim() == 1
    y = (true[None] if single else true).to(torch.float64)
    if pred.dim() != 2 or pred.shape[1] != y.shape[1]:
        raise ValueError(f"pred must be (E, T) with T = {y.shape[1]}, got {tuple(pred.shape)}")
    t = y.shape[1]
    y = y - y.mean(dim=1, keepdim=True)
    e = pred.shape[0]
    sx = torch.zeros(e, dtype=torch.float64, device=pred.device)
    for a in range(0, t, chunk):
        sx += pred[:, a : a + chunk].to(torch.float64).sum(1)
    mx = sx / max(t, 1)
    sxx = torch.zeros(e, dtype=torch.float64, device=pred.device)
    sxy = torch.zeros((e, y.shape[0]), dtype=torch.float64, device=pred.device)
    for a in range(0, t, chunk):
        x = pred[:, a : a + chunk].to(torch.float64) - mx[:, None]
        sxx += (x * x).sum(1)
        sxy += x @ y[:, a : a + chunk].T
    syy = (y * y).sum(1)
    den = torch.sqrt(sxx[:, None] * syy[None, :])
    r = torch.where(den > 0, sxy / torch.where(den > 0, den, 1.0), torch.zeros_like(sxy))
    r = r.clamp(-1.0, 1.0).to(torch.float32)
    return r[:, 0] if single else r


def pearson(pred: torch.Tensor | np.ndarray, true: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Batched Pearson r (see :func:`pearson_ref` for shapes), through the Triton kernel on CUDA."""
    pred = torch.as_tensor(pred)
    true = torch.as_tensor(true)
    try:
        from neuronscope.kernels.corr import pearson as kernel_pearson
    except ImportError:
        return pearson_ref(pred, true.to(pred.device))
    return kernel_pearson(pred, true.to(pred.device))


def pearson_from_sums(n: float, sx: np.ndarray, sxx: np.ndarray, sy: float, syy: float, sxy: np.ndarray) -> np.ndarray:
    """Pearson r from sufficient statistics (float64 arrays of any equal shape), constant → 0."""
    cov = n * sxy - sx * sy
    var_x = n * sxx - sx * sx
    var_y = n * syy - sy * sy
    den = np.sqrt(np.clip(var_x, 0, None) * max(var_y, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, cov / np.where(den > 0, den, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0)
