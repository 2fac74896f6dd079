"""The scan pass of the miner: one Triton pass per batch that updates every neuron's statistics.

``_mine_kernel`` reads a tile of activations (or, fused into a gated MLP, the gate and up projections,
writing ``act(gate) * up`` for the down projection) and, in the same pass:

* moments (count, mean, M2 — per tile in float64, Chan-merged across tiles), min, max, positive and
  non-finite counts, as per-program partials that ``_fold_kernel`` folds into the state;
* the histogram (the spec's grid; the bin is estimated from ``log10|x|`` and settled by two exact
  comparisons with the stored edges, so it bins bit-identically to ``torch.bucketize``), by atomics;
* candidates for the top-k, bottom-k and every (neuron, stratum) sample reservoir: an element is a
  candidate only if it beats the current k-th entry of its row (read in place), so after warm-up almost
  every element costs one comparison, and only a few keys ``segment * rows + row`` are written out
  (:mod:`._mine_merge` merges them; :mod:`.mine` is the public launcher).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._device import sm_count
from ._mine_job import MineJob

__all__ = ["ACTIVATIONS", "act_only", "launch"]

ACTIVATIONS = {"silu": 0, "gelu_tanh": 1}
"""The gated activations the fused kernel computes, and their codes (the kernel's ``ACT``)."""

# Tile (rows x neurons) and warps on CUDA. The per-neuron running state (float64 moments, thresholds) and
# the per-element work keep ~170 registers live (ptxas, sm_90): 8 x 128 with 4 warps runs 3 CTAs per SM
# without spilling; 32 x 128 with 8 warps needs 255 and runs one.
_BLOCK_T, _BLOCK_N, _WARPS = 8, 128, 4
_BLOCKS_INTERPRETED = 64, 256  # the interpreter pays per operation, not per element: fewer, bigger tiles
_FLT_MAX = tl.constexpr(3.4028234663852886e38)  # globals a kernel reads must be constexpr
_LOG10_2 = tl.constexpr(0.30102999566398120)
_MAX_ROWS_PER_PROG = 1 << 22  # keeps the per-program int32 counts far from overflow


@triton.jit
def _emit(cand, keys, out_ptr, count_ptr, cap, SIZE: tl.constexpr):
    """Appends the keys of this tile's candidates to a global buffer (one atomic per tile)."""
    ci = cand.to(tl.int32)
    n = tl.sum(tl.sum(ci, axis=1), axis=0)
    if n > 0:  # after warm-up most tiles have none: skip the scan
        base = tl.atomic_add(count_ptr, n)
        fc = tl.reshape(ci, [SIZE])
        off = base + tl.cumsum(fc, 0) - fc
        # Past ``cap`` nothing is written; the launcher sees the total count and collects again.
        tl.store(out_ptr + off, tl.reshape(keys, [SIZE]), mask=(fc > 0) & (off < cap))


@triton.jit
def _mine_kernel(
    x_ptr, u_ptr, o_ptr, pos_ptr, ph_ptr, nh_ptr,
    tkv_ptr, tkp_ptr, bkv_ptr, bkp_ptr, spr_ptr, spp_ptr, edges_ptr,
    hist_ptr, part_ptr, cand_ptr, count_ptr,
    row0, row1, rows_per_prog, N, stride_x, stride_u, stride_o, cap, n_progs_t, keyr,
    K: tl.constexpr, KB: tl.constexpr, R: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, MINE: tl.constexpr,
    STATS: tl.constexpr, TOPK: tl.constexpr, BOTTOM: tl.constexpr, SAMPLES: tl.constexpr, ROWMASK: tl.constexpr,
    M: tl.constexpr, NB: tl.constexpr, NS: tl.constexpr, D: tl.constexpr, BPD: tl.constexpr,
    LO: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_t = tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cmask = cols < N
    start = row0 + pid_t * rows_per_prog
    end = tl.minimum(start + rows_per_prog, row1)

    if MINE:
        # Thresholds: the last (k-th) entry of each row, read in place from the state.
        if TOPK:
            tkv = tl.load(tkv_ptr + cols * K, mask=cmask, other=0.0)
            tkp = tl.load(tkp_ptr + cols * K, mask=cmask, other=0)
        if BOTTOM:
            bkv = tl.load(bkv_ptr + cols * KB, mask=cmask, other=0.0)
            bkp = tl.load(bkp_ptr + cols * KB, mask=cmask, other=0)
        if SAMPLES:
            nh = tl.load(nh_ptr + cols, mask=cmask, other=0)
        if STATS:
            cnt = tl.zeros([BLOCK_N], tl.float64)
            mean = tl.zeros([BLOCK_N], tl.float64)
            m2 = tl.zeros([BLOCK_N], tl.float64)
            mn = tl.full([BLOCK_N], float("inf"), tl.float32)
            mx = tl.full([BLOCK_N], float("-inf"), tl.float32)
            npos = tl.zeros([BLOCK_N], tl.int32)
            nnf = tl.zeros([BLOCK_N], tl.int32)

    for t0 in range(start, end, BLOCK_T):
        rows = t0 + tl.arange(0, BLOCK_T)
        rmask = rows < end
        m2d = rmask[:, None] & cmask[None, :]
        rows64 = rows.to(tl.int64)
        if GATED:
            g = tl.load(x_ptr + rows64[:, None] * stride_x + cols[None, :], mask=m2d, other=0.0).to(tl.float32)
            u = tl.load(u_ptr + rows64[:, None] * stride_u + cols[None, :], mask=m2d, other=0.0).to(tl.float32)
            if ACT == 0:  # SiLU
                a = g / (1.0 + tl.exp(-g))
            else:  # GELU, tanh approximation; tanh(z) = 1 - 2 / (exp(2z) + 1) saturates cleanly at ±1
                z = 0.7978845608028654 * (g + 0.044715 * g * g * g)
                a = 0.5 * g * (2.0 - 2.0 / (tl.exp(2.0 * z) + 1.0))
            y = (a * u).to(o_ptr.dtype.element_ty)
            tl.store(o_ptr + rows64[:, None] * stride_o + cols[None, :], y, mask=m2d)
            x = y.to(tl.float32)  # mine exactly what the down projection reads
        else:
            x = tl.load(x_ptr + rows64[:, None] * stride_x + cols[None, :], mask=m2d, other=0.0).to(tl.float32)

        if MINE:
            pos = tl.load(pos_ptr + rows, mask=rmask, other=-1)
            valid = m2d
            if ROWMASK:
                valid = valid & (pos >= 0)[:, None]
            ok = valid & (tl.abs(x) <= _FLT_MAX)  # finite; NaN compares false
            if STATS:
                # Tile moments in float64 (no overflow, no cancellation), Chan-merged into the running ones.
                x64 = tl.where(ok, x.to(tl.float64), 0.0)
                tc = tl.sum(ok.to(tl.float64), axis=0)
                tmean = tl.sum(x64, axis=0) / tl.maximum(tc, 1.0)
                dv = tl.where(ok, x64 - tmean[None, :], 0.0)
                tm2 = tl.sum(dv * dv, axis=0)
                tot = cnt + tc
                w = tc / tl.maximum(tot, 1.0)
                delta = tmean - mean
                mean = mean + delta * w
                m2 = m2 + tm2 + delta * delta * cnt * w
                cnt = tot
                mn = tl.minimum(mn, tl.min(tl.where(ok, x, float("inf")), axis=0))
                mx = tl.maximum(mx, tl.max(tl.where(ok, x, float("-inf")), axis=0))
                npos += tl.sum((ok & (x > 0)).to(tl.int32), axis=0)
                nnf += tl.sum((valid & ~ok).to(tl.int32), axis=0)
            if STATS or SAMPLES:
                # Bin = number of edges strictly below x. With c = #{positive edges e_j < |x|} (x > 0) or
                # #{e_j <= |x|} (x <= 0), bin = M + c or M - c. log10 gives c up to ±1; two exact
                # comparisons with the stored float32 edges settle it.
                ax = tl.where(ok, tl.abs(x), 0.0)
                gq = (tl.log2(tl.where(ax > 0, ax, 1.0)) * _LOG10_2 - LO) * BPD
                gq = tl.where(ax > 0, tl.minimum(tl.maximum(gq, -1.0), M + 1.0), -1.0)
                f = (gq + 1.0).to(tl.int32) - 1
                f = tl.minimum(tl.maximum(f, 0), M)
                e0 = tl.load(edges_ptr + f, mask=ok & (f < M), other=float("inf"))
                e1 = tl.load(edges_ptr + f + 1, mask=ok & (f + 1 < M), other=float("inf"))
                up_side = x > 0
                c = (f + tl.where(up_side, e0 < ax, e0 <= ax).to(tl.int32)
                     + tl.where(up_side, e1 < ax, e1 <= ax).to(tl.int32))
                if STATS:
                    b = tl.where(up_side, M + c, M - c)
                    ones = tl.full([BLOCK_T, BLOCK_N], 1, tl.int64)
                    tl.atomic_add(hist_ptr + cols[None, :] * NB + b, ones, mask=ok, sem="relaxed")
            # Candidates are written as keys ``segment * keyr + row`` (segment: the neuron, or the sample
            # cell): sorted, they group by segment in row order, which is all the merge needs.
            key = cols[None, :].to(tl.int64) * keyr + rows64[:, None]
            if TOPK:
                beat = (x > tkv[None, :]) | ((x == tkv[None, :]) & (pos[:, None] < tkp[None, :]))
                _emit(ok & beat, key, cand_ptr, count_ptr, cap, BLOCK_T * BLOCK_N)
            if BOTTOM:
                beat = (x < bkv[None, :]) | ((x == bkv[None, :]) & (pos[:, None] < bkp[None, :]))
                _emit(ok & beat, key, cand_ptr + cap, count_ptr + 1, cap, BLOCK_T * BLOCK_N)
            if SAMPLES:
                # Stratum from the distance to the centre bin (see spec.bin_strata).
                dec = tl.minimum((c - 1) // BPD, D - 1)
                s = tl.where(c == 0, D, tl.where(up_side, D + 1 + dec, D - 1 - dec))
                cell = cols[None, :] * NS + s
                ph = tl.load(ph_ptr + rows, mask=rmask, other=0)
                prio = (ph[:, None] ^ nh[None, :]).to(tl.int64)
                thr = tl.load(spr_ptr + cell * R, mask=ok, other=0)
                tie = ok & (prio == thr)
                thr_pos = tl.load(spp_ptr + cell * R, mask=tie, other=-1)
                cand = ok & ((prio > thr) | (tie & (pos[:, None] < thr_pos)))
                skey = cell.to(tl.int64) * keyr + rows64[:, None]
                _emit(cand, skey, cand_ptr + 2 * cap, count_ptr + 2, cap, BLOCK_T * BLOCK_N)

    if STATS:  # only ever set together with MINE
        off = pid_t * N + cols
        plane = n_progs_t * N
        tl.store(part_ptr + off, cnt, mask=cmask)
        tl.store(part_ptr + plane + off, mean, mask=cmask)
        tl.store(part_ptr + 2 * plane + off, m2, mask=cmask)
        tl.store(part_ptr + 3 * plane + off, mn.to(tl.float64), mask=cmask)
        tl.store(part_ptr + 4 * plane + off, mx.to(tl.float64), mask=cmask)
        tl.store(part_ptr + 5 * plane + off, npos.to(tl.float64), mask=cmask)
        tl.store(part_ptr + 6 * plane + off, nnf.to(tl.float64), mask=cmask)


@triton.jit
def _fold_kernel(part_ptr, n_parts, N, cnt_ptr, mean_ptr, m2_ptr, min_ptr, max_ptr, posc_ptr, nnf_ptr,
                 BLOCK: tl.constexpr):
    """Folds the per-program partials ``(7, P, N)`` of one pass into the state, in place (float64 Chan)."""
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = cols < N
    plane = n_parts * N
    c = tl.zeros([BLOCK], tl.float64)
    mu = tl.zeros([BLOCK], tl.float64)
    q = tl.zeros([BLOCK], tl.float64)
    lo = tl.full([BLOCK], float("inf"), tl.float64)
    hi = tl.full([BLOCK], float("-inf"), tl.float64)
    npos = tl.zeros([BLOCK], tl.float64)
    nnf = tl.zeros([BLOCK], tl.float64)
    for p in range(0, n_parts):
        off = p * N + cols
        pc = tl.load(part_ptr + off, mask=m, other=0.0)
        pm = tl.load(part_ptr + plane + off, mask=m, other=0.0)
        tot = c + pc
        w = pc / tl.maximum(tot, 1.0)
        d = pm - mu
        mu = mu + d * w
        q = q + tl.load(part_ptr + 2 * plane + off, mask=m, other=0.0) + d * d * c * w
        c = tot
        lo = tl.minimum(lo, tl.load(part_ptr + 3 * plane + off, mask=m, other=float("inf")))
        hi = tl.maximum(hi, tl.load(part_ptr + 4 * plane + off, mask=m, other=float("-inf")))
        npos += tl.load(part_ptr + 5 * plane + off, mask=m, other=0.0)
        nnf += tl.load(part_ptr + 6 * plane + off, mask=m, other=0.0)
    # Chan's combination of the running (count, mean, M2) with this batch's, as mining.reference._chan.
    cnt = tl.load(cnt_ptr + cols, mask=m, other=0)
    na = cnt.to(tl.float64)
    tot = na + c
    w = c / tl.maximum(tot, 1.0)
    mean_a = tl.load(mean_ptr + cols, mask=m, other=0.0)
    d = mu - mean_a
    tl.store(mean_ptr + cols, tl.where(tot > 0, mean_a + d * w, 0.0), mask=m)
    tl.store(m2_ptr + cols, tl.load(m2_ptr + cols, mask=m, other=0.0) + q + d * d * na * w, mask=m)
    tl.store(cnt_ptr + cols, cnt + c.to(tl.int64), mask=m)
    tl.store(min_ptr + cols, tl.minimum(tl.load(min_ptr + cols, mask=m, other=0.0), lo.to(tl.float32)), mask=m)
    tl.store(max_ptr + cols, tl.maximum(tl.load(max_ptr + cols, mask=m, other=0.0), hi.to(tl.float32)), mask=m)
    tl.store(posc_ptr + cols, tl.load(posc_ptr + cols, mask=m, other=0) + npos.to(tl.int64), mask=m)
    tl.store(nnf_ptr + cols, tl.load(nnf_ptr + cols, mask=m, other=0) + nnf.to(tl.int64), mask=m)


def _blocks(device: torch.device) -> tuple[int, int]:
    """The tile (rows, neurons): the CUDA one, or the interpreter's bigger one."""
    return (_BLOCK_T, _BLOCK_N) if device.type == "cuda" else _BLOCKS_INTERPRETED


def _grid(rows: int, n: int, device: torch.device) -> tuple[int, int, int]:
    """(column blocks, programs along the rows, rows per program): enough programs to fill the device."""
    block_t, block_n = _blocks(device)
    n_col = triton.cdiv(n, block_n)
    if device.type == "cuda":
        target = 4 * sm_count(device)
    else:
        target = 2 * n_col  # the interpreter: still split in two so the partial folding is exercised
    n_t = max(1, min(triton.cdiv(rows, block_t), target // n_col))
    n_t = max(n_t, triton.cdiv(rows, _MAX_ROWS_PER_PROG))
    per = triton.cdiv(triton.cdiv(rows, n_t), block_t) * block_t
    return n_col, triton.cdiv(rows, per), per


def launch(job: MineJob, *, row0: int, row1: int, kinds: tuple[bool, bool, bool], stats: bool,
           gated: tuple[torch.Tensor, torch.Tensor, str] | None = None) -> None:
    """One mining launch over rows [row0, row1): candidates of ``kinds`` (top, bottom, samples) into the
    buffers and, with ``stats``, every other statistic folded into the state.

    gated: (gate, up, act): read those and write ``job.src`` (the output) instead of reading it.
    """
    cfg, src, n = job.cfg, job.src, job.n
    n_col, n_t, per = _grid(row1 - row0, n, src.device)
    block_t, block_n = _blocks(src.device)
    part = torch.empty((7, n_t, n), dtype=torch.float64, device=src.device) if stats else job.counts
    x, u, act = gated if gated else (src, src, "silu")
    _mine_kernel[(n_col, n_t)](
        x, u, src, job.pos, job.ph, job.nh, *job.thresholds(), job.edges,
        job.st.hist if stats else job.counts, part, job.cand, job.counts,
        row0, row1, per, n, x.stride(0), u.stride(0), src.stride(0), job.cap, n_t, job.rows,
        K=cfg.k, KB=max(cfg.bottom_k, 1), R=max(cfg.samples_per_stratum, 1),
        ACT=ACTIVATIONS[act], GATED=gated is not None, MINE=True, STATS=stats, TOPK=kinds[0], BOTTOM=kinds[1],
        SAMPLES=kinds[2], ROWMASK=job.rowmask, M=job.m, NB=cfg.n_bins, NS=cfg.n_strata, D=cfg.n_decades,
        BPD=cfg.bins_per_decade, LO=float(cfg.lo_decade), BLOCK_T=block_t, BLOCK_N=block_n,
        num_warps=_WARPS,
    )
    if stats:
        st = job.st
        _fold_kernel[(triton.cdiv(n, 128),)](
            part, n_t, n, st.count, st.mean, st.m2, st.min, st.max, st.positive, st.nonfinite, BLOCK=128,
        )


def act_only(gate: torch.Tensor, up: torch.Tensor, out: torch.Tensor, act: str) -> None:
    """The fused activation alone (no mining): ``out = act(gate) * up``, all (R, N)."""
    rows, n = gate.shape
    n_col, n_t, per = _grid(rows, n, gate.device)
    block_t, block_n = _blocks(gate.device)
    d = out  # unused pointer arguments
    _mine_kernel[(n_col, n_t)](
        gate, up, out, d, d, d, d, d, d, d, d, d, d, d, d, d, d,
        0, rows, per, n, gate.stride(0), up.stride(0), out.stride(0), 0, n_t, 0,
        K=1, KB=1, R=1, ACT=ACTIVATIONS[act], GATED=True, MINE=False, STATS=False, TOPK=False, BOTTOM=False,
        SAMPLES=False, ROWMASK=False, M=1, NB=1, NS=1, D=1, BPD=1, LO=0.0, BLOCK_T=block_t, BLOCK_N=block_n,
        num_warps=_WARPS,
    )
