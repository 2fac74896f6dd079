"""The reference miner in plain PyTorch: streaming update and exact merge of LayerStats.

It is the definition the fast miners (C++ on CPU, Triton on GPU) are tested against, and the
fallback wherever they are unavailable. Top-k and samples use the same threshold filter as the
kernels: an element is a candidate only if it beats the current k-th entry of its neuron (or of its
(neuron, stratum) cell), so after warm-up almost every element costs one comparison.
"""

from __future__ import annotations

import torch

from .spec import MiningConfig, bin_strata, hist_edges, neuron_hash, position_hash, priorities
from .stats import LayerStats


def _segmented_top(
    seg: torch.Tensor, score: torch.Tensor, pos: torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orders entries by (segment asc, score desc, position asc) and keeps the first ``keep`` per segment.

    Every segment must hold at least ``keep`` entries. Returns (order, segment, rank) of the kept ones,
    where ``order`` indexes the inputs.
    """
    order = torch.argsort(pos, stable=True)
    order = order[torch.argsort(score[order], descending=True, stable=True)]
    order = order[torch.argsort(seg[order], stable=True)]
    seg_sorted = seg[order]
    counts = torch.bincount(seg_sorted)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(seg_sorted.numel(), device=seg.device) - starts[seg_sorted]
    kept = rank < keep
    return order[kept], seg_sorted[kept], rank[kept]


def _update_topk(
    values: torch.Tensor, positions: torch.Tensor, acts: torch.Tensor, pos: torch.Tensor, finite: torch.Tensor
) -> None:
    """Merges the batch ``acts: (T, N)`` at ``pos: (T,)`` into the top-k buffers ``(N, K)`` in place."""
    k = values.shape[1]
    thr_v, thr_p = values[:, k - 1], positions[:, k - 1]
    cand = finite & ((acts > thr_v) | ((acts == thr_v) & (pos[:, None] < thr_p)))
    if k < acts.shape[0] and int(cand.sum()) > 2 * k * acts.shape[1]:
        # Warm-up: nothing below the batch's own k-th largest value can enter the top-k.
        batch_kth = torch.topk(torch.where(finite, acts, -torch.inf), k, dim=0).values[k - 1]
        cand &= acts >= batch_kth
    t_idx, n_idx = cand.nonzero(as_tuple=True)
    if n_idx.numel() == 0:
        return
    touched = torch.unique(n_idx)
    local = torch.full((values.shape[0],), -1, dtype=torch.int64, device=values.device)
    local[touched] = torch.arange(touched.numel(), device=values.device)
    seg = torch.cat([local[touched].repeat_interleave(k), local[n_idx]])
    val = torch.cat([values[touched].reshape(-1), acts[t_idx, n_idx]])
    psn = torch.cat([positions[touched].reshape(-1), pos[t_idx]])
    order, seg_k, rank = _segmented_top(seg, val, psn, k)
    values[touched[seg_k], rank] = val[order]
    positions[touched[seg_k], rank] = psn[order]


def _update_samples(
    st: LayerStats, acts: torch.Tensor, pos: torch.Tensor, finite: torch.Tensor, bins: torch.Tensor,
    neuron_offset: int, cfg: MiningConfig,
) -> None:
    """Reservoir update: each (neuron, stratum) keeps its R highest-priority tokens."""
    r = cfg.samples_per_stratum
    n, s = acts.shape[1], cfg.n_strata
    strata = bin_strata(cfg).to(acts.device)[bins]  # (T, N)
    prio = priorities(
        position_hash(pos, cfg.seed),
        neuron_hash(torch.arange(n, device=acts.device) + neuron_offset, cfg.seed),
    )
    cell = torch.arange(n, device=acts.device)[None, :] * s + strata  # (T, N)
    thr_p = st.sample_priority[:, :, r - 1].reshape(-1)[cell]
    thr_pos = st.sample_positions[:, :, r - 1].reshape(-1)[cell]
    cand = finite & ((prio > thr_p) | ((prio == thr_p) & (pos[:, None] < thr_pos)))
    t_idx, n_idx = cand.nonzero(as_tuple=True)
    if n_idx.numel() == 0:
        return
    c_idx = cell[t_idx, n_idx]
    touched = torch.unique(c_idx)
    local = torch.full((n * s,), -1, dtype=torch.int64, device=acts.device)
    local[touched] = torch.arange(touched.numel(), device=acts.device)
    pri_flat = st.sample_priority.reshape(n * s, r)
    pos_flat = st.sample_positions.reshape(n * s, r)
    val_flat = st.sample_values.reshape(n * s, r)
    seg = torch.cat([local[touched].repeat_interleave(r), local[c_idx]])
    pri = torch.cat([pri_flat[touched].reshape(-1), prio[t_idx, n_idx]])
    psn = torch.cat([pos_flat[touched].reshape(-1), pos[t_idx]])
    val = torch.cat([val_flat[touched].reshape(-1), acts[t_idx, n_idx]])
    order, seg_k, rank = _segmented_top(seg, pri, psn, r)
    pri_flat[touched[seg_k], rank] = pri[order]
    pos_flat[touched[seg_k], rank] = psn[order]
    val_flat[touched[seg_k], rank] = val[order]


@torch.no_grad()
def mine_ref(
    st: LayerStats, acts: torch.Tensor, positions: torch.Tensor, neuron_offset: int, cfg: MiningConfig
) -> LayerStats:
    """Folds one batch of activations into ``st`` (in place) and returns it.

    acts: (T, N) any float dtype (upcast to float32); positions: (T,) int64 global token positions;
    neuron_offset: global id of neuron 0 of this layer (``layer * N``), used by the sampling hash.
    """
    acts = acts.to(torch.float32)
    pos = positions.to(device=acts.device, dtype=torch.int64)
    finite = torch.isfinite(acts)
    all_finite = bool(finite.all())
    n_fin = finite.sum(0)
    st.nonfinite += acts.shape[0] - n_fin

    # Moments: the batch's own (count, mean, M2) in float64, combined with Chan's formula.
    a64 = acts.double() if all_finite else torch.where(finite, acts.double(), 0.0)
    cnt = n_fin.double()
    mean_b = a64.sum(0) / cnt.clamp_min(1)
    dev = a64 - mean_b
    if not all_finite:
        dev = torch.where(finite, dev, 0.0)
    m2_b = (dev * dev).sum(0)
    _chan(st, n_fin, mean_b, m2_b)

    st.min = torch.minimum(st.min, torch.where(finite, acts, torch.inf).amin(0))
    st.max = torch.maximum(st.max, torch.where(finite, acts, -torch.inf).amax(0))
    st.positive += (acts > 0).sum(0) if all_finite else (finite & (acts > 0)).sum(0)

    bins = torch.bucketize(acts, hist_edges(cfg).to(acts.device))  # number of edges strictly below
    b = cfg.n_bins
    flat = torch.arange(acts.shape[1], device=acts.device)[None, :] * b + bins
    st.hist += torch.bincount(flat[finite], minlength=acts.shape[1] * b).view(-1, b)

    _update_topk(st.topk_values, st.topk_positions, acts, pos, finite)
    if cfg.bottom_k:
        neg_v = -st.bottomk_values
        _update_topk(neg_v, st.bottomk_positions, -acts, pos, finite)
        st.bottomk_values = -neg_v
    if cfg.samples_per_stratum:
        _update_samples(st, acts, pos, finite, bins, neuron_offset, cfg)
    return st


def _chan(st: LayerStats, n_b: torch.Tensor, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
    """Chan et al.'s parallel combination of (count, mean, M2), in place on ``st``."""
    n_a = st.count.double()
    nb = n_b.double()
    n = n_a + nb
    safe = n.clamp_min(1)
    delta = mean_b - st.mean
    st.mean = torch.where(n > 0, st.mean + delta * nb / safe, 0.0)
    st.m2 = st.m2 + m2_b + delta * delta * n_a * nb / safe
    st.count = st.count + n_b


@torch.no_grad()
def merge_stats(a: LayerStats, b: LayerStats, cfg: MiningConfig) -> LayerStats:
    """Combines two disjoint streams' statistics: exact for everything but the moments (Chan)."""
    out = LayerStats(**{k: v.clone() for k, v in a.to_tensors().items()})
    _chan(out, b.count, b.mean, b.m2)
    out.min = torch.minimum(a.min, b.min)
    out.max = torch.maximum(a.max, b.max)
    out.positive = a.positive + b.positive
    out.nonfinite = a.nonfinite + b.nonfinite
    out.hist = a.hist + b.hist
    n = a.n_neurons
    seg_of = torch.arange(n)

    def merge_rows(va, pa, vb, pb, keep, extra=()):
        rows = va.shape[0]
        seg = torch.cat([seg_of[:rows].repeat_interleave(keep)] * 2)
        val = torch.cat([va.reshape(-1), vb.reshape(-1)])
        psn = torch.cat([pa.reshape(-1), pb.reshape(-1)])
        order, seg_k, rank = _segmented_top(seg, val, psn, keep)
        res = [torch.empty_like(va), torch.empty_like(pa)]
        res[0][seg_k, rank] = val[order]
        res[1][seg_k, rank] = psn[order]
        for ea, eb in extra:
            e = torch.cat([ea.reshape(-1), eb.reshape(-1)])
            r = torch.empty_like(ea)
            r[seg_k, rank] = e[order]
            res.append(r)
        return res

    out.topk_values, out.topk_positions = merge_rows(
        a.topk_values, a.topk_positions, b.topk_values, b.topk_positions, cfg.k
    )
    if cfg.bottom_k:
        nv, out.bottomk_positions = merge_rows(
            -a.bottomk_values, a.bottomk_positions, -b.bottomk_values, b.bottomk_positions, cfg.bottom_k
        )
        out.bottomk_values = -nv
    r, s = cfg.samples_per_stratum, cfg.n_strata
    if r:
        seg_of = torch.arange(n * s)
        pri, psn, val = merge_rows(
            a.sample_priority.reshape(n * s, r), a.sample_positions.reshape(n * s, r),
            b.sample_priority.reshape(n * s, r), b.sample_positions.reshape(n * s, r), r,
            extra=[(a.sample_values.reshape(n * s, r), b.sample_values.reshape(n * s, r))],
        )
        out.sample_priority = pri.view(n, s, r)
        out.sample_positions = psn.view(n, s, r)
        out.sample_values = val.view(n, s, r)
    return out
