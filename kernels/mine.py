"""Fused activation mining: one Triton pass per batch updates every neuron's LayerStats.

``_mine_kernel`` reads a tile of activations (or, fused into a gated MLP, the gate and up projections,
writing ``act(gate) * up`` for the down projection) and, in the same pass:

* moments (count, mean, M2 — per tile in float64, Chan-merged across tiles), min, max, positive and
  non-finite counts, as per-program partials that ``_fold_kernel`` folds into the state;
* the histogram (the spec's grid; the bin is estimated from ``log10|x|`` and settled by two exact
  comparisons with the stored edges, so it bins bit-identically to ``torch.bucketize``), by atomics;
* candidates for the top-k, bottom-k and every (neuron, stratum) sample reservoir: an element is a
  candidate only if it beats the current k-th entry of its row (read in place), so after warm-up almost
  every element costs one comparison, and only a few keys ``segment * rows + row`` are written out.

The candidates are then sorted and merged exactly: ``_merge_kernel`` ranks every row's entries and
candidates (the reference's stable order, ties included), or — for rows longer than 128, and under the
interpreter — the reference's own segmented sort does. The store equals :func:`mine_ref` bit for bit
but the moments (float64, equal within ~1e-12 relative). One host sync per call reads the candidate
counts. When a batch holds more candidates than the buffers (the first batches of a run, when every
element beats an empty slot), the overflowing kinds are collected again over chunks of rows, each chunk
merged before the next so the thresholds rise.
"""

from __future__ import annotations

import os
from dataclasses import fields
from functools import lru_cache
from typing import Literal

import torch
import triton
import triton.language as tl

from neuronscope.errors import ConfigError
from neuronscope.mining.reference import _segmented_top, mine_ref
from neuronscope.mining.spec import MiningConfig, bin_strata, hist_edges, neuron_hash, position_hash
from neuronscope.mining.stats import LayerStats

__all__ = [
    "BatchRows", "batch_rows", "fused_gated_act_mine", "gated_act_ref", "mine_ref", "mine_stats", "mine_topk",
]

Activation = Literal["silu", "gelu_tanh"]
_ACTS = {"silu": 0, "gelu_tanh": 1}
# Tile (rows x neurons) and warps on CUDA. The per-neuron running state (float64 moments, thresholds) and
# the per-element work keep ~170 registers live (ptxas, sm_90): 8 x 128 with 4 warps runs 3 CTAs per SM
# without spilling; 32 x 128 with 8 warps needs 255 and runs one.
_BLOCK_T, _BLOCK_N, _WARPS = 8, 128, 4
_BLOCKS_INTERPRETED = 64, 256  # the interpreter pays per operation, not per element: fewer, bigger tiles
_FLT_MAX = tl.constexpr(3.4028234663852886e38)  # globals a kernel reads must be constexpr
_LOG10_2 = tl.constexpr(0.30102999566398120)
_MAX_ROWS_PER_PROG = 1 << 22  # keeps the per-program int32 counts far from overflow
_MAX_CANDIDATES = (1 << 31) - 1  # the int32 candidate counters: a pass covers at most this many elements
_MERGE_MAX_KEEP = 128  # longer rows (k > 128) are merged by the reference's segmented sort instead
# The interpreter runs a program in milliseconds: on the CPU the merge uses the segmented sort (same
# result) unless a test turns the kernel on for small shapes: "segments" (a program per touched segment)
# or "keys" (a program per candidate, as on the GPU).
_MERGE_KERNEL_INTERPRETED: str | None = None


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
    K: tl.constexpr, KB: tl.constexpr, R: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr, MINE: tl.constexpr, STATS: tl.constexpr,
    TOPK: tl.constexpr, BOTTOM: tl.constexpr, SAMPLES: tl.constexpr, ROWMASK: tl.constexpr,
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


@triton.jit
def _before(s1, p1, s2, p2, LOWER: tl.constexpr):
    """Strict order of (score, position) entries: better score first, then the lower position."""
    if LOWER:
        better = s1 < s2
    else:
        better = s1 > s2
    return better | ((s1 == s2) & (p1 < p2))


@triton.jit
def _pick(sel, x, axis: tl.constexpr, FLOAT: tl.constexpr):
    """The one ``x`` selected along ``axis`` by the one-hot ``sel``, bit-exact (signed zeros included)."""
    if FLOAT:
        bits = tl.sum(tl.where(sel, x.to(tl.int32, bitcast=True), 0), axis=axis)
        return bits.to(tl.float32, bitcast=True)
    else:
        return tl.sum(tl.where(sel, x, 0), axis=axis)


@triton.jit
def _merge_kernel(
    segs_ptr, starts_ptr, keys_ptr, src_ptr, stride_src, pos_ptr, ph_ptr, nh_ptr,
    sc_ptr, sp_ptr, sv_ptr, keyr,
    KIND: tl.constexpr, KEEP: tl.constexpr, KP: tl.constexpr, C: tl.constexpr, NS: tl.constexpr,
    BY_KEY: tl.constexpr,
):
    """Merges one segment's sorted candidates into its state row (top-k, bottom-k or a sample cell).

    The row is sorted and candidates come in row order, so every entry's new slot is its rank: the
    entries before it in (score, position) order, exact ties going to the row's entry, then to the
    earlier candidate — the reference's stable sort. Candidates are taken ``C`` at a time with the
    row held in registers; the row is written once.
    """
    if BY_KEY:  # one program per candidate: the first of each segment's run does the segment
        i = tl.program_id(0)
        seg = tl.load(keys_ptr + i) // keyr
        prev = tl.load(keys_ptr + tl.maximum(i - 1, 0)) // keyr
        lo = tl.where((i == 0) | (prev != seg), i, 0).to(tl.int64)
        hi = tl.where((i == 0) | (prev != seg), tl.load(starts_ptr + seg + 1), 0).to(tl.int64)
    else:  # one program per listed segment
        seg = tl.load(segs_ptr + tl.program_id(0))
        lo = tl.load(starts_ptr + seg)
        hi = tl.load(starts_ptr + seg + 1)
    if hi > lo:
        slots = tl.arange(0, KP)
        amask = slots < KEEP
        row = seg.to(tl.int64) * KEEP
        a_s = tl.load(sc_ptr + row + slots, mask=amask, other=0)
        a_p = tl.load(sp_ptr + row + slots, mask=amask, other=0)
        if KIND == 2:
            a_v = tl.load(sv_ptr + row + slots, mask=amask, other=0.0)
        jj = tl.arange(0, C)
        for c0 in range(lo, hi, C):
            bmask = c0 + jj < hi
            key = tl.load(keys_ptr + c0 + jj, mask=bmask, other=0)
            t = key % keyr
            if KIND == 2:
                n = (key // keyr) // NS
            else:
                n = key // keyr
            b_v = tl.load(src_ptr + t * stride_src + n, mask=bmask, other=0.0).to(tl.float32)
            b_p = tl.load(pos_ptr + t, mask=bmask, other=0)
            if KIND == 2:
                ph = tl.load(ph_ptr + t, mask=bmask, other=0)
                b_s = (ph ^ tl.load(nh_ptr + n, mask=bmask, other=0)).to(tl.int64)
            elif KIND == 1:
                b_s = -b_v  # bottom-k is stored as values; ordered as the top-k of their negation
            else:
                b_s = b_v
            if KIND == 1:
                a_key = -a_s
            else:
                a_key = a_s
            # [KP, C]: candidate j strictly before row entry i.
            b_first = _before(b_s[None, :], b_p[None, :], a_key[:, None], a_p[:, None], False) & bmask[None, :]
            rank_a = slots + tl.sum(b_first.to(tl.int32), axis=1)
            a_first = (~b_first) & amask[:, None] & bmask[None, :]
            bb = _before(b_s[:, None], b_p[:, None], b_s[None, :], b_p[None, :], False)
            tie = (b_s[:, None] == b_s[None, :]) & (b_p[:, None] == b_p[None, :]) & (jj[:, None] < jj[None, :])
            rank_b = (tl.sum(a_first.to(tl.int32), axis=0)
                      + tl.sum(((bb | tie) & bmask[:, None]).to(tl.int32), axis=0))
            rank_b = tl.where(bmask, rank_b, KP)  # never selected
            sel_a = rank_a[None, :] == slots[:, None]  # [slot, i]
            sel_b = rank_b[None, :] == slots[:, None]  # [slot, j]
            took_a = tl.sum(sel_a.to(tl.int32), axis=1) > 0
            if KIND == 2:
                new_s = tl.where(took_a, _pick(sel_a, a_s, 1, False), _pick(sel_b, b_s, 1, False))
                a_v = tl.where(took_a, _pick(sel_a, a_v, 1, True), _pick(sel_b, b_v, 1, True))
            else:
                b_store = b_v
                new_s = tl.where(took_a, _pick(sel_a, a_s, 1, True), _pick(sel_b, b_store, 1, True))
            a_p = tl.where(took_a, _pick(sel_a, a_p, 1, False), _pick(sel_b, b_p, 1, False))
            a_s = new_s
        tl.store(sc_ptr + row + slots, a_s, mask=amask)
        tl.store(sp_ptr + row + slots, a_p, mask=amask)
        if KIND == 2:
            tl.store(sv_ptr + row + slots, a_v, mask=amask)


def _grid_ok(cfg: MiningConfig) -> bool:
    """Whether the kernel's binning is exact for this grid: normal float32 edges, and few enough bins per
    side that the float32 log estimate is off by less than one bin (spec defaults: 129 per side)."""
    return cfg.lo_decade >= -37 and cfg.hi_decade <= 38 and cfg.n_decades * cfg.bins_per_decade < (1 << 15)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_ok(t: torch.Tensor) -> bool:
    """Whether the kernel can run on ``t``'s device: CUDA, or the CPU under ``TRITON_INTERPRET=1``."""
    return t.device.type == "cuda" or (_interpreting() and t.device.type == "cpu")


def _blocks(device: torch.device) -> tuple[int, int]:
    return (_BLOCK_T, _BLOCK_N) if device.type == "cuda" else _BLOCKS_INTERPRETED


def _grid(rows: int, n: int, device: torch.device) -> tuple[int, int, int]:
    """(column blocks, programs along the rows, rows per program): enough programs to fill the device."""
    block_t, block_n = _blocks(device)
    n_col = triton.cdiv(n, block_n)
    if device.type == "cuda":
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 2 * n_col  # the interpreter: still split in two so the partial folding is exercised
    n_t = max(1, min(triton.cdiv(rows, block_t), target // n_col))
    n_t = max(n_t, triton.cdiv(rows, _MAX_ROWS_PER_PROG))
    per = triton.cdiv(triton.cdiv(rows, n_t), block_t) * block_t
    return n_col, triton.cdiv(rows, per), per


@lru_cache(maxsize=64)
def _grid_consts(cfg: MiningConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positive edges (M,), all edges (B - 1,), bin strata (B,)) on ``device``, from the spec itself."""
    edges = hist_edges(cfg).to(device)
    return edges[cfg.n_decades * cfg.bins_per_decade + 1 :].contiguous(), edges, bin_strata(cfg).to(device)


@lru_cache(maxsize=128)
def _neuron_hashes(n: int, offset: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """neuron_hash of the layer's global neuron ids, as int32 (kernel) and int64 (merge)."""
    nh = neuron_hash(torch.arange(n, device=device) + offset, seed)
    return nh.to(torch.int32), nh


class _Job:
    """One mining call's constants: the rows, their hashes, the grid and the candidate buffers."""

    def __init__(self, st: LayerStats, src: torch.Tensor, rows: BatchRows, neuron_offset: int,
                 cfg: MiningConfig, capacity: int | None, samples: bool = True) -> None:
        dev = src.device
        self.st, self.src, self.pos, self.rowmask, self.cfg = st, src, rows.pos, rows.masked, cfg
        self.rows, self.n = src.shape
        self.edges, self.full_edges, self.strata = _grid_consts(cfg, dev)
        self.m = self.edges.numel()
        self.samples = samples and cfg.samples_per_stratum > 0
        self.ph = rows.hashes(cfg.seed) if self.samples else rows.pos
        self.nh, self.nh64 = _neuron_hashes(self.n, int(neuron_offset), cfg.seed, dev)
        per_row = max(2 * cfg.k, 2 * cfg.bottom_k, 8 * cfg.samples_per_stratum, 32)
        self.cap = int(capacity) if capacity else max(1 << 16, per_row * self.n)
        self.cand = torch.empty(3 * self.cap, dtype=torch.int64, device=dev)
        self.counts = torch.zeros(3, dtype=torch.int32, device=dev)

    def thresholds(self) -> list[torch.Tensor]:
        """Views of the last entry of every row (read with the row stride by the kernel; no copies)."""
        st, cfg = self.st, self.cfg
        dummy = st.topk_values
        out = [st.topk_values[:, -1], st.topk_positions[:, -1]]
        out += [st.bottomk_values[:, -1], st.bottomk_positions[:, -1]] if cfg.bottom_k else [dummy, dummy]
        if self.samples:
            out += [st.sample_priority[:, :, -1], st.sample_positions[:, :, -1]]
        else:
            out += [dummy, dummy]
        return out


def _launch(job: _Job, *, row0: int, row1: int, kinds: tuple[bool, bool, bool], stats: bool,
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
        ACT=_ACTS[act], GATED=gated is not None, MINE=True, STATS=stats, TOPK=kinds[0], BOTTOM=kinds[1],
        SAMPLES=kinds[2], ROWMASK=job.rowmask, M=job.m, NB=cfg.n_bins, NS=cfg.n_strata, D=cfg.n_decades,
        BPD=cfg.bins_per_decade, LO=float(cfg.lo_decade), BLOCK_T=block_t, BLOCK_N=block_n,
        num_warps=_WARPS,
    )
    if stats:
        st = job.st
        _fold_kernel[(triton.cdiv(n, 128),)](
            part, n_t, n, st.count, st.mean, st.m2, st.min, st.max, st.positive, st.nonfinite, BLOCK=128,
        )


def _act_only(gate: torch.Tensor, up: torch.Tensor, out: torch.Tensor, act: str) -> None:
    """The fused activation alone (no mining): ``out = act(gate) * up``, all (R, N)."""
    rows, n = gate.shape
    n_col, n_t, per = _grid(rows, n, gate.device)
    block_t, block_n = _blocks(gate.device)
    d = out  # unused pointer arguments
    _mine_kernel[(n_col, n_t)](
        gate, up, out, d, d, d, d, d, d, d, d, d, d, d, d, d, d,
        0, rows, per, n, gate.stride(0), up.stride(0), out.stride(0), 0, n_t, 0,
        K=1, KB=1, R=1, ACT=_ACTS[act], GATED=True, MINE=False, STATS=False, TOPK=False, BOTTOM=False,
        SAMPLES=False, ROWMASK=False, M=1, NB=1, NS=1, D=1, BPD=1, LO=0.0, BLOCK_T=block_t, BLOCK_N=block_n,
        num_warps=_WARPS,
    )


@lru_cache(maxsize=8)
def _boundaries(n_segs: int, keyr: int, device: torch.device) -> torch.Tensor:
    """The first key of every segment and one past the last, ``(S + 1,)`` int64."""
    return torch.arange(n_segs + 1, device=device) * keyr


def _merge_kind(job: _Job, kind: int, keys: torch.Tensor) -> None:
    """Merges the candidates ``keys`` (``segment * rows + row``, any order) of one kind into the state."""
    if keys.numel() == 0:
        return
    st, cfg = job.st, job.cfg
    keys = torch.sort(keys).values  # by segment, then row: the reference's candidate order
    r = cfg.samples_per_stratum
    keep = (cfg.k, cfg.bottom_k, r)[kind]
    if keep > _MERGE_MAX_KEEP or not (keys.is_cuda or _MERGE_KERNEL_INTERPRETED):
        _merge_kind_torch(job, kind, keys)
        return
    n_segs = job.n * cfg.n_strata if kind == 2 else job.n
    starts = torch.searchsorted(keys, _boundaries(n_segs, job.rows, keys.device))
    # On the GPU, one program per candidate (the first of each segment merges it): no host sync. The
    # interpreter pays per program, so there the touched segments are listed instead.
    by_key = keys.is_cuda or _MERGE_KERNEL_INTERPRETED == "keys"
    segs = keys if by_key else torch.unique(keys // job.rows)
    state = ([st.topk_values, st.topk_positions, st.topk_values] if kind == 0 else
             [st.bottomk_values, st.bottomk_positions, st.bottomk_values] if kind == 1 else
             [st.sample_priority, st.sample_positions, st.sample_values])
    kp = triton.next_power_of_2(keep)
    # The rank matrices are KP x KP, KP x C and C x C: small candidate blocks keep them in registers.
    _merge_kernel[(segs.numel(),)](
        segs, starts, keys, job.src, job.src.stride(0), job.pos, job.ph, job.nh, *state, job.rows,
        KIND=kind, KEEP=keep, KP=kp, C=16 if kp <= 16 else 32, NS=cfg.n_strata, BY_KEY=by_key,
        num_warps=4 if kp <= 32 else 8,
    )


def _merge_kind_torch(job: _Job, kind: int, keys: torch.Tensor) -> None:
    """The same merge with the reference's segmented sort: rows longer than the merge kernel's, the CPU."""
    st, cfg = job.st, job.cfg
    seg, t = keys // job.rows, keys % job.rows
    nrn = seg // cfg.n_strata if kind == 2 else seg
    val = job.src[t, nrn].to(torch.float32)
    psn = job.pos[t]
    if kind == 0:
        _merge([st.topk_values, st.topk_positions], seg, [val, psn])
    elif kind == 1:
        neg = -st.bottomk_values
        _merge([neg, st.bottomk_positions], seg, [-val, psn])
        st.bottomk_values.copy_(-neg)
    else:
        r = cfg.samples_per_stratum
        prio = position_hash(psn, cfg.seed) ^ job.nh64[nrn]
        state = [st.sample_priority.view(-1, r), st.sample_positions.view(-1, r), st.sample_values.view(-1, r)]
        _merge(state, seg, [prio, psn, val])


def _merge(state: list[torch.Tensor], seg: torch.Tensor, new: list[torch.Tensor]) -> None:
    """Merges candidates into rows of ``state`` = [score (S, K), position (S, K), *extras] in place.

    seg: (C,) row of each candidate, ``new``: their [score, position, *extras], in (row, token) order
    after the existing entries, as in the reference, so exact ties resolve identically.
    """
    keep = state[0].shape[1]
    touched, local = torch.unique(seg, return_inverse=True)
    segs = torch.cat([torch.arange(touched.numel(), device=seg.device).repeat_interleave(keep), local])
    cat = [torch.cat([s[touched].reshape(-1), v]) for s, v in zip(state, new, strict=True)]
    order, seg_k, rank = _segmented_top(segs, cat[0], cat[1], keep)
    for s, v in zip(state, cat, strict=True):
        s[touched[seg_k], rank] = v[order]


def _collect(job: _Job, first: list[int], row0: int, row1: int) -> None:
    """Merges the candidates of a pass over rows [row0, row1); kinds that overflowed are collected again
    over chunks of those rows."""
    over = [c > job.cap for c in first]
    for kind, c in enumerate(first):
        if c and not over[kind]:
            _merge_kind(job, kind, job.cand[kind * job.cap : kind * job.cap + c])
    if not any(over):
        return
    # Every element is at most one candidate per kind, so ``cap // N`` rows always fit. Start with about
    # the rows that fill the buffers of an empty state and double while the thresholds keep candidates
    # few: the merges then handle O(k N log T) candidates instead of every element.
    cfg = job.cfg
    size = max(1, min(job.cap // job.n, 2 * max(cfg.k, cfg.bottom_k, cfg.samples_per_stratum)))
    start = row0
    while start < row1:
        end = min(row1, start + size)
        job.counts.zero_()
        _launch(job, row0=start, row1=end, kinds=tuple(over), stats=False)
        got = job.counts.tolist()
        if max(got) > job.cap:  # only after growing: retry the chunk smaller
            size = max(1, size // 2)
            continue
        for kind in range(3):
            if over[kind]:
                _merge_kind(job, kind, job.cand[kind * job.cap : kind * job.cap + got[kind]])
        start = end
        if 3 * max(got) <= job.cap:  # thresholds have risen: take bigger chunks
            size *= 2


def _check_state(st: LayerStats, n: int, cfg: MiningConfig, device: torch.device) -> None:
    want = LayerStats.empty(0, cfg)
    for f in fields(st):
        t, w = getattr(st, f.name), getattr(want, f.name)
        if t.device != device or not t.is_contiguous() or t.dtype != w.dtype:
            raise ConfigError(f"LayerStats.{f.name} must be a contiguous {w.dtype} tensor on {device} "
                              f"(it is updated in place), got {t.dtype} on {t.device}")
        if tuple(t.shape) != (n, *w.shape[1:]):
            raise ConfigError(f"LayerStats.{f.name} has shape {tuple(t.shape)}, expected {(n, *w.shape[1:])}")


class BatchRows:
    """The rows of one batch to mine, built once and shared by all its layers.

    pos: (R,) int64 global position of every row of the flattened activations, -1 for rows not mined
    (padding); masked: whether any row is skipped. Build it with :func:`batch_rows`.
    """

    def __init__(self, pos: torch.Tensor, masked: bool) -> None:
        self.pos, self.masked = pos, masked
        self._hashes: dict[int, torch.Tensor] = {}

    @property
    def n_rows(self) -> int:
        return int(self.pos.shape[0])

    def hashes(self, seed: int) -> torch.Tensor:
        """position_hash of every row, (R,) int32 (the sampling priorities' token half)."""
        if seed not in self._hashes:
            self._hashes[seed] = position_hash(self.pos, seed).to(torch.int32)
        return self._hashes[seed]


def batch_rows(n_rows: int, positions: torch.Tensor, index: torch.Tensor | None = None,
               device: torch.device | str | None = None) -> BatchRows:
    """The mined rows of a batch of ``n_rows`` flattened rows: all of them at ``positions: (n_rows,)``,
    or only the rows ``index: (V,)`` (unique) at ``positions: (V,)``."""
    device = torch.device(device) if device is not None else positions.device
    positions = positions.to(device=device, dtype=torch.int64)
    if index is None:
        if positions.shape != (n_rows,):
            raise ConfigError(f"positions must be ({n_rows},) to match acts, got {tuple(positions.shape)}")
        return BatchRows(positions.contiguous(), False)
    if index.dim() != 1 or positions.shape != index.shape:
        raise ConfigError(f"index and positions must be 1-D of the same length, got {tuple(index.shape)} "
                          f"and {tuple(positions.shape)}")
    full = torch.full((n_rows,), -1, dtype=torch.int64, device=device)
    full[index.to(device=device, dtype=torch.int64)] = positions
    return BatchRows(full, True)


def _mine(st: LayerStats, src: torch.Tensor, rows: BatchRows, neuron_offset: int, cfg: MiningConfig,
          capacity: int | None, gated: tuple | None = None) -> None:
    """The full update: one stats + candidates pass (per slice of rows whose flat indices fit in int32),
    the stats folded, the candidates merged."""
    if rows.n_rows != src.shape[0] or rows.pos.device != src.device:
        raise ConfigError(f"rows describe {rows.n_rows} rows on {rows.pos.device}, acts have {src.shape[0]} "
                          f"on {src.device}")
    job = _Job(st, src, rows, neuron_offset, cfg, capacity)
    kinds = (True, cfg.bottom_k > 0, job.samples)
    step = max(1, _MAX_CANDIDATES // job.n)
    for row0 in range(0, job.rows, step):
        row1 = min(job.rows, row0 + step)
        job.counts.zero_()
        _launch(job, row0=row0, row1=row1, kinds=kinds, stats=True, gated=gated)
        _collect(job, job.counts.tolist(), row0, row1)  # the one host sync per layer and batch


@torch.no_grad()
def mine_stats(
    st: LayerStats,
    acts: torch.Tensor,
    positions: torch.Tensor | None,
    neuron_offset: int,
    cfg: MiningConfig,
    *,
    index: torch.Tensor | None = None,
    rows: BatchRows | None = None,
    capacity: int | None = None,
) -> LayerStats:
    """Folds one batch of activations into ``st`` (in place) and returns it; same contract as ``mine_ref``.

    acts: (T, N) float32/bfloat16/float16 (rows may be strided), positions: (T,) int64 global token
    positions; or, with ``index: (V,)``, acts are (R, N) rows of which only ``index`` (unique row ids)
    are mined, at ``positions: (V,)`` — no gathered copy is made; or ``rows`` (from :func:`batch_rows`,
    built once per batch and shared by its layers) replaces positions and index. neuron_offset: global
    id of neuron 0 (``layer * N``), for the sampling hash. Every tensor of ``st`` must be contiguous on
    acts' device. capacity: candidates buffered per kind before collecting again in chunks (tests
    shrink it). Runs the Triton kernel on CUDA tensors (or CPU ones under ``TRITON_INTERPRET=1``);
    otherwise, and for grids beyond float32's normal range (``lo_decade < -37``, ``hi_decade > 38``),
    it falls back to :func:`mine_ref`.
    """
    if acts.dim() != 2:
        raise ConfigError(f"acts must be (T, N), got shape {tuple(acts.shape)}")
    if not acts.dtype.is_floating_point:
        raise ConfigError(f"acts must be a floating tensor, got {acts.dtype}")
    if rows is None:
        if positions is None:
            raise ConfigError("give positions (or rows)")
        rows = batch_rows(acts.shape[0], positions, index, acts.device)
    if not (_triton_ok(acts) and _grid_ok(cfg)):
        return _mine_ref_rows(st, acts, rows, neuron_offset, cfg)
    if acts.stride(1) != 1:
        acts = acts.contiguous()
    _check_state(st, acts.shape[1], cfg, acts.device)
    if acts.shape[0] and acts.shape[1]:
        _mine(st, acts, rows, neuron_offset, cfg, capacity)
    return st


def _mine_ref_rows(st: LayerStats, acts: torch.Tensor, rows: BatchRows, neuron_offset: int,
                   cfg: MiningConfig) -> LayerStats:
    """mine_ref on the mined rows of ``acts`` (the fallback without Triton)."""
    if not rows.masked:
        return mine_ref(st, acts, rows.pos, neuron_offset, cfg)
    index = (rows.pos >= 0).nonzero()[:, 0]
    return mine_ref(st, acts.index_select(0, index), rows.pos[index], neuron_offset, cfg)


@torch.no_grad()
def mine_topk(st: LayerStats, acts: torch.Tensor, positions: torch.Tensor, cfg: MiningConfig) -> LayerStats:
    """Streaming top-k (and bottom-k when ``cfg.bottom_k``) alone: only those fields of ``st`` change.

    acts: (T, N) on CUDA (or the CPU under ``TRITON_INTERPRET=1``), positions: (T,). The same threshold
    filter and exact merge as :func:`mine_stats`, without the other statistics: the bandwidth-bound
    core of mining, benchmarked on its own.
    """
    if acts.dim() != 2:
        raise ConfigError(f"acts must be (T, N), got shape {tuple(acts.shape)}")
    if not _triton_ok(acts):
        raise ConfigError(f"mine_topk needs CUDA tensors (or TRITON_INTERPRET=1), got {acts.device}")
    acts = acts if acts.stride(1) == 1 else acts.contiguous()
    rows = batch_rows(acts.shape[0], positions, None, acts.device)
    _check_state(st, acts.shape[1], cfg, acts.device)
    if acts.numel():
        job = _Job(st, acts, rows, 0, cfg, None, samples=False)
        step = max(1, _MAX_CANDIDATES // job.n)
        for row0 in range(0, job.rows, step):
            row1 = min(job.rows, row0 + step)
            job.counts.zero_()
            _launch(job, row0=row0, row1=row1, kinds=(True, cfg.bottom_k > 0, False), stats=False)
            _collect(job, job.counts.tolist(), row0, row1)
    return st


def gated_act_ref(gate: torch.Tensor, up: torch.Tensor, act: Activation) -> torch.Tensor:
    """``act(gate) * up`` computed in float32 and rounded once to the input dtype; shapes (..., N)."""
    g = gate.to(torch.float32)
    a = torch.nn.functional.silu(g) if act == "silu" else torch.nn.functional.gelu(g, approximate="tanh")
    return (a * up.to(torch.float32)).to(gate.dtype)


@torch.no_grad()
def fused_gated_act_mine(
    gate: torch.Tensor,
    up: torch.Tensor,
    act: Activation,
    st: LayerStats | None = None,
    index: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
    neuron_offset: int = 0,
    cfg: MiningConfig | None = None,
    *,
    rows: BatchRows | None = None,
    capacity: int | None = None,
) -> torch.Tensor:
    """Returns ``act(gate) * up`` (same shape and dtype as ``gate``, computed in float32) and mines it.

    gate, up: (..., N), flattened to (R, N) rows. With ``st``: the rows ``index`` (V,) — all rows when
    None — at ``positions`` (V,) (or (R,)), or the prebuilt ``rows``, are folded into ``st`` in the same
    kernel pass, exactly as ``mine_ref(st, out.reshape(R, N)[index], positions, neuron_offset, cfg)``
    would. Without CUDA (and without ``TRITON_INTERPRET=1``) it computes :func:`gated_act_ref` and mines
    with ``mine_ref``.
    """
    if act not in _ACTS:
        raise ConfigError(f"act must be one of {sorted(_ACTS)}, got {act!r}")
    if gate.shape != up.shape or gate.dtype != up.dtype or gate.device != up.device:
        raise ConfigError(f"gate and up must match in shape, dtype and device, got {tuple(gate.shape)} "
                          f"{gate.dtype} {gate.device} and {tuple(up.shape)} {up.dtype} {up.device}")
    if not gate.dtype.is_floating_point or gate.dim() < 1:
        raise ConfigError(f"gate must be a floating tensor (..., N), got {gate.dtype} {tuple(gate.shape)}")
    if st is not None and ((positions is None and rows is None) or cfg is None):
        raise ConfigError("mining needs positions (or rows) and cfg along with st")
    n = gate.shape[-1]
    g2, u2 = gate.reshape(-1, n), up.reshape(-1, n)
    if st is not None and rows is None:
        rows = batch_rows(g2.shape[0], positions, index, gate.device)
    if not _triton_ok(gate):
        out = gated_act_ref(gate, up, act)
        if st is not None:
            _mine_ref_rows(st, out.reshape(-1, n), rows, neuron_offset, cfg)
        return out
    g2 = g2 if g2.stride(1) == 1 else g2.contiguous()
    u2 = u2 if u2.stride(1) == 1 else u2.contiguous()
    out = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    o2 = out.view(-1, n)
    if g2.shape[0] == 0 or n == 0:
        return out
    if st is None or not _grid_ok(cfg):
        _act_only(g2, u2, o2, act)
        if st is not None:
            mine_stats(st, o2, None, neuron_offset, cfg, rows=rows)  # falls back to mine_ref
        return out
    _check_state(st, n, cfg, gate.device)
    _mine(st, o2, rows, neuron_offset, cfg, capacity, gated=(g2, u2, act))
    return out
