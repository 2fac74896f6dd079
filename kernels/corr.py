"""Batched Pearson correlation: E predicted-activation rows against one true row or M true rows.

``r[e, m] = cov(pred[e], true[m]) / (std(pred[e]) * std(true[m]))`` over all T tokens — numpy's
``corrcoef`` and OpenAI's ``correlation_score``. A row with no variance (constant, or T < 2) has no
defined correlation; it is given r = 0.0 (the explanation predicts nothing), never NaN. Non-finite
inputs are the caller's to avoid (they propagate).

Numerics: every row is shifted by the mean of its first tokens before any product is summed, so the
raw-moment formulas ``Sxy - Sx Sy / T`` subtract small numbers (no catastrophic cancellation when a
row's mean dwarfs its spread; the reference leaves boolean rows unshifted: their sums are exact
integers). Blocks are summed in float32 (the kernel carries its running sums with Kahan compensation, the reference adds
every block into float64) and everything after the sums is float64. Constant rows are detected exactly
(min == max, or a boolean row's count of 0 or T), not from a rounded variance.

The Triton kernel reads ``pred`` once (single pass; bool/uint8 masks or float16/bfloat16/float32
predictions): one program per (block of E, block of M, slice of T); the M > 1 case is a tiled
``tl.dot`` in 3xTF32 (float32-level products on the tensor cores).
"""

from __future__ import annotations

import os

import torch

from neuronscope.errors import ConfigError

from ._device import interpreting, sm_count

try:
    import triton
    import triton.language as tl
except ImportError:  # the reference path needs no Triton
    triton = None

__all__ = ["corr_ref", "corr_triton", "pearson"]

_SHIFT_TOKENS = 1024  # tokens whose mean shifts each row
_CHUNK_ELEMS = 1 << 22  # elements converted to float64 at once (true rows)
_BLOCK_ROWS, _BLOCK_ELEMS = 512, 1 << 20  # reference: a cache-sized float32 block of pred


def _check(pred: torch.Tensor, true: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Validates shapes; returns ``true`` as (M, T) and whether it was a single row."""
    if pred.dim() != 2:
        raise ConfigError(f"pred must be (E, T), got shape {tuple(pred.shape)}")
    single = true.dim() == 1
    true2 = true[None, :] if single else true
    if true2.dim() != 2 or true2.shape[1] != pred.shape[1]:
        raise ConfigError(f"true must be (T,) or (M, T) with T = {pred.shape[1]}, got {tuple(true.shape)}")
    if pred.device != true.device:
        raise ConfigError(f"pred and true must be on one device, got {pred.device} and {true.device}")
    if pred.dtype.is_complex:
        raise ConfigError(f"pred must be a real or bool tensor, got {pred.dtype}")
    if not true.dtype.is_floating_point:
        raise ConfigError(f"true must be a floating tensor, got {true.dtype}")
    return true2, single


def _shift(x: torch.Tensor) -> torch.Tensor:
    """Mean of each row's first tokens, ``(R,)`` float64: close to the row mean, cheap to get."""
    head = x[:, :_SHIFT_TOKENS]
    if head.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    return head.to(torch.float64).mean(1)


def _row_moments(x: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Shifted sums of each row, chunked over T: (S1, S2, min, max of the raw row), each ``(R,)`` float64."""
    rows, t = x.shape
    s1 = torch.zeros(rows, dtype=torch.float64, device=x.device)
    s2 = torch.zeros_like(s1)
    lo = torch.full_like(s1, torch.inf)
    hi = torch.full_like(s1, -torch.inf)
    step = max(1, _CHUNK_ELEMS // max(rows, 1))
    for a in range(0, t, step):
        raw = x[:, a : a + step].to(torch.float64)
        lo = torch.minimum(lo, raw.amin(1))
        hi = torch.maximum(hi, raw.amax(1))
        d = raw - shift[:, None]
        s1 += d.sum(1)
        s2 += (d * d).sum(1)
    return s1, s2, lo, hi


def _finish(t: int, sx, sxx, px_const, sy, syy, py_const, sxy) -> torch.Tensor:
    """Pearson r ``(E, M)`` float32 from float64 shifted sums; rows without variance give 0."""
    n = float(max(t, 1))
    vx = (sxx - sx * sx / n).clamp_min(0)
    vy = (syy - sy * sy / n).clamp_min(0)
    cov = sxy - sx[:, None] * sy[None, :] / n
    den = torch.sqrt(vx[:, None] * vy[None, :])
    undefined = px_const[:, None] | py_const[None, :] | (den == 0)
    r = torch.where(undefined, 0.0, cov / torch.where(undefined, 1.0, den))
    return r.clamp(-1.0, 1.0).to(torch.float32)


def _constant(lo: torch.Tensor, hi: torch.Tensor, t: int) -> torch.Tensor:
    return (lo == hi) if t >= 2 else torch.ones_like(lo, dtype=torch.bool)


@torch.no_grad()
def corr_ref(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Pearson r of every pred row with every true row, in plain PyTorch, blocked over E and T.

    pred: (E, T) bool or any real dtype (typically bool/uint8 masks or float16/bfloat16/float32
    simulations); true: (T,) → returns (E,), or (M, T) → (E, M);
    float32. Rows without variance give 0.0. Converts at most a block of ~1M elements of pred to float32
    at a time; every block's sums (float32, pairwise / BLAS) are accumulated in float64. Boolean rows
    are summed exactly as integers; other rows are shifted by the mean of their first tokens first.
    """
    true2, single = _check(pred, true)
    e, t = pred.shape
    m = true2.shape[0]
    dev = pred.device
    y = true2.to(torch.float32)
    b = _shift(y).to(torch.float32)
    sy, syy, ylo, yhi = _row_moments(y, b.to(torch.float64))
    binary = pred.dtype == torch.bool
    a = torch.zeros(e, dtype=torch.float32, device=dev) if binary else _shift(pred).to(torch.float32)
    f64 = dict(dtype=torch.float64, device=dev)
    sx, sxx, sxy = torch.zeros(e, **f64), torch.zeros(e, **f64), torch.zeros((e, m), **f64)
    lo, hi = torch.full((e,), torch.inf, **f64), torch.full((e,), -torch.inf, **f64)
    rows = min(max(e, 1), _BLOCK_ROWS)
    cols = max(64, _BLOCK_ELEMS // rows)
    buf = torch.empty((rows, min(cols, t)), dtype=torch.float64 if pred.dtype == torch.float64 else torch.float32,
                      device=dev)
    for c in range(0, t, cols):
        # One GEMM gives both sum(p * dy) and, through a row of ones, sum(p).
        dy = y[:, c : c + cols] - b[:, None]  # (M, L)
        rhs = torch.cat([dy, torch.ones_like(dy[:1])]).T  # (L, M + 1)
        for r in range(0, e, rows):
            blk = pred[r : r + rows, c : c + cols]
            f = buf[: blk.shape[0], : blk.shape[1]]
            f.copy_(blk)  # into a reused buffer: much faster than .to() on a strided slice
            if not binary:
                lo[r : r + rows] = torch.minimum(lo[r : r + rows], f.amin(1))
                hi[r : r + rows] = torch.maximum(hi[r : r + rows], f.amax(1))
                f -= a[r : r + rows, None]
                sxx[r : r + rows] += (f * f).sum(1)
            prod = f @ rhs.to(f.dtype)
            sxy[r : r + rows] += prod[:, :m]
            sx[r : r + rows] += prod[:, m]  # exact for 0/1 rows: integer sums below 2**24
    if binary:
        sxx = sx.clone()  # p * p == p
        px_const = (sx == 0) | (sx == t)
    else:
        px_const = _constant(lo, hi, t)
    r = _finish(t, sx, sxx, px_const, sy, syy, _constant(ylo, yhi, t), sxy)
    return r[:, 0] if single else r


if triton is not None:

    @triton.jit
    def _kahan(acc, comp, x):
        """Compensated ``acc + x``: returns the new (acc, comp)."""
        yv = x - comp
        tv = acc + yv
        return tv, (tv - acc) - yv

    @triton.jit
    def _corr_kernel(
        p_ptr, y_ptr, a_ptr, b_ptr, part_ptr, sxy_ptr,
        E, M, T, t_per_prog, stride_p, stride_y,
        DOT: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr,
    ):
        pid_e = tl.program_id(0)
        pid_m = tl.program_id(1)
        pid_s = tl.program_id(2)
        rows = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
        emask = rows < E
        cols = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        mmask = cols < M
        a = tl.load(a_ptr + rows, mask=emask, other=0.0)
        if DOT:
            b = tl.load(b_ptr + cols, mask=mmask, other=0.0)
        else:
            b = tl.load(b_ptr)  # the single true row's shift
        t_start = pid_s * t_per_prog
        t_end = tl.minimum(t_start + t_per_prog, T)
        sx = tl.zeros([BLOCK_E], tl.float32)
        sx_c = tl.zeros([BLOCK_E], tl.float32)
        sxx = tl.zeros([BLOCK_E], tl.float32)
        sxx_c = tl.zeros([BLOCK_E], tl.float32)
        lo = tl.full([BLOCK_E], float("inf"), tl.float32)
        hi = tl.full([BLOCK_E], float("-inf"), tl.float32)
        sxy = tl.zeros([BLOCK_E, BLOCK_M], tl.float32)
        sxy_c = tl.zeros([BLOCK_E, BLOCK_M], tl.float32)
        rows64 = rows.to(tl.int64)
        cols64 = cols.to(tl.int64)
        for t0 in range(t_start, t_end, BLOCK_T):
            ts = t0 + tl.arange(0, BLOCK_T)
            tmask = ts < t_end
            pm = emask[:, None] & tmask[None, :]
            p = tl.load(p_ptr + rows64[:, None] * stride_p + ts[None, :], mask=pm, other=0).to(tl.float32)
            d = tl.where(pm, p - a[:, None], 0.0)
            lo = tl.minimum(lo, tl.min(tl.where(pm, p, float("inf")), axis=1))
            hi = tl.maximum(hi, tl.max(tl.where(pm, p, float("-inf")), axis=1))
            sx, sx_c = _kahan(sx, sx_c, tl.sum(d, axis=1))
            sxx, sxx_c = _kahan(sxx, sxx_c, tl.sum(d * d, axis=1))
            if DOT:
                ym = mmask[:, None] & tmask[None, :]
                y = tl.load(y_ptr + cols64[:, None] * stride_y + ts[None, :], mask=ym, other=0.0)
                dy = tl.where(ym, y - b[:, None], 0.0)
                # 3xTF32 on the tensor cores: float32-level products; plain TF32 would cost ~1e-3 relative.
                prod = tl.dot(d, tl.trans(dy), input_precision="tf32x3")
            else:
                y = tl.load(y_ptr + ts, mask=tmask, other=0.0)
                dy = tl.where(tmask, y - b, 0.0)
                prod = tl.sum(d * dy[None, :], axis=1)[:, None]
            sxy, sxy_c = _kahan(sxy, sxy_c, prod)
        plane = tl.num_programs(2) * E
        off = pid_s * E + rows
        if pid_m == 0:  # the pred-row sums are the same for every block of M
            tl.store(part_ptr + off, sx, mask=emask)
            tl.store(part_ptr + plane + off, sxx, mask=emask)
            tl.store(part_ptr + 2 * plane + off, lo, mask=emask)
            tl.store(part_ptr + 3 * plane + off, hi, mask=emask)
        out = sxy_ptr + (pid_s * E + rows64[:, None]) * M + cols[None, :]
        tl.store(out, sxy, mask=emask[:, None] & mmask[None, :])


@torch.no_grad()
def corr_triton(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Same as :func:`corr_ref` in one Triton pass over ``pred`` (CUDA, or CPU under TRITON_INTERPRET=1).

    pred: (E, T), true: (T,) → (E,) or (M, T) → (E, M), float32.
    """
    if triton is None:
        raise ConfigError("corr_triton needs triton (pip install triton)")
    true2, single = _check(pred, true)
    if pred.device.type != "cuda" and not interpreting():
        raise ConfigError(f"corr_triton needs CUDA tensors (or TRITON_INTERPRET=1), got {pred.device}")
    e, t = pred.shape
    m = true2.shape[0]
    dev = pred.device
    if pred.dtype == torch.bool:
        pred = pred.view(torch.uint8)  # same bytes; Triton loads uint8 cleanly
    if pred.stride(1) != 1:
        pred = pred.contiguous()
    y = true2.to(torch.float32).contiguous()
    # Shifts rounded to float32 first: the kernel subtracts exactly these, and so does _row_moments.
    a = _shift(pred).to(torch.float32)
    b = _shift(y).to(torch.float32)
    sy, syy, ylo, yhi = _row_moments(y, b.to(torch.float64))
    dot = m > 1
    cuda = dev.type == "cuda"
    # Largest tiles that compile without spilling on sm_90 (~175 registers); 8 warps for the dot tile.
    block_e, block_m, block_t, warps = (64, 64, 16, 8) if dot else (8, 1, 512, 4)
    n_e, n_m = triton.cdiv(e, block_e), triton.cdiv(m, block_m)
    target = 4 * sm_count(dev) if cuda else 2
    n_s = max(1, min(triton.cdiv(t, block_t), target // max(n_e * n_m, 1)))
    per = max(block_t, triton.cdiv(triton.cdiv(t, n_s), block_t) * block_t)
    n_s = max(1, triton.cdiv(t, per))
    part = torch.empty((4, n_s, e), dtype=torch.float32, device=dev)
    sxy = torch.empty((n_s, e, m), dtype=torch.float32, device=dev)
    if e and m:
        _corr_kernel[(n_e, n_m, n_s)](
            pred, y, a, b, part, sxy,
            e, m, t, per, pred.stride(0), y.stride(0),
            DOT=dot, BLOCK_E=block_e, BLOCK_M=block_m, BLOCK_T=block_t, num_warps=warps,
        )
    part64 = part.to(torch.float64)
    r = _finish(t, part64[0].sum(0), part64[1].sum(0), _constant(part64[2].amin(0), part64[3].amax(0), t),
                sy, syy, _constant(ylo, yhi, t), sxy.to(torch.float64).sum(0))
    return r[:, 0] if single else r


def pearson(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Batched Pearson r, ``(E, T) x (T,) → (E,)`` or ``(E, T) x (M, T) → (E, M)``; rows without variance → 0.

    Triton on CUDA tensors, the chunked PyTorch reference otherwise; ``NEURONSCOPE_BACKEND=ref`` forces
    the reference, ``=triton`` the kernel (CPU tensors then need ``TRITON_INTERPRET=1``).
    """
    name = (os.environ.get("NEURONSCOPE_BACKEND") or "auto").lower()
    if name not in ("auto", "ref", "cpu", "triton"):
        raise ConfigError(f"NEURONSCOPE_BACKEND must be one of auto, ref, cpu, triton, got {name!r}")
    if name == "triton" or (name == "auto" and pred.device.type == "cuda" and triton is not None):
        return corr_triton(pred, true)
    return corr_ref(pred, true)
