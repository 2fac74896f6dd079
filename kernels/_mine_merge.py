"""The merge of the miner: the scan's candidates into the sorted top-k, bottom-k and sample rows, exactly.

The candidates of a pass (keys ``segment * rows + row``, see :mod:`._mine_scan`) are sorted, which
groups them by segment in row order; ``_merge_kernel`` then ranks every row's entries and candidates
(the reference's stable order, ties included) and writes each row once. Rows longer than 128, and the
CPU under the interpreter, use the reference's own segmented sort instead (same result). :mod:`.mine`
is the public launcher.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

from neuronscope.mining.reference import _segmented_top
from neuronscope.mining.spec import position_hash

from ._mine_job import MineJob

__all__ = ["merge_kind"]

_MERGE_MAX_KEEP = 128  # longer rows (k > 128) are merged by the reference's segmented sort instead
# The interpreter runs a program in milliseconds: on the CPU the merge uses the segmented sort (same
# result) unless a test turns the kernel on for small shapes: "segments" (a program per touched segment)
# or "keys" (a program per candidate, as on the GPU).
_MERGE_KERNEL_INTERPRETED: str | None = None


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


@lru_cache(maxsize=8)
def _boundaries(n_segs: int, keyr: int, device: torch.device) -> torch.Tensor:
    """The first key of every segment and one past the last, ``(S + 1,)`` int64."""
    return torch.arange(n_segs + 1, device=device) * keyr


def merge_kind(job: MineJob, kind: int, keys: torch.Tensor) -> None:
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


def _merge_kind_torch(job: MineJob, kind: int, keys: torch.Tensor) -> None:
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
