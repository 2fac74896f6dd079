"""Brute-force statistics over a full activation matrix: the independent oracle of the miners."""

from __future__ import annotations

import numpy as np
import torch

from neuronscope.mining.spec import MiningConfig, bin_strata, hist_edges, neuron_hash, position_hash


def brute_force(acts: np.ndarray, positions: np.ndarray, neuron_offset: int, cfg: MiningConfig) -> dict:
    """All statistics of ``acts: (T, N)`` at ``positions: (T,)`` computed column by column in numpy."""
    acts = acts.astype(np.float32)
    _t, n = acts.shape
    edges = hist_edges(cfg).numpy()
    strata = bin_strata(cfg).numpy()
    ph = position_hash(torch.from_numpy(positions.astype(np.int64)), cfg.seed).numpy()
    nh = neuron_hash(torch.arange(n) + neuron_offset, cfg.seed).numpy()
    out: dict[str, list] = {k: [] for k in (
        "topk_values", "topk_positions", "bottomk_values", "bottomk_positions", "count", "mean", "m2",
        "min", "max", "positive", "nonfinite", "hist", "sample_values", "sample_positions", "sample_priority")}
    for j in range(n):
        col = acts[:, j]
        fin = np.isfinite(col)
        v, p = col[fin], positions[fin]
        order = sorted(range(len(v)), key=lambda i: (-float(v[i]), int(p[i])))
        k = cfg.k
        tv = np.full(k, -np.inf, np.float32)
        tp = np.full(k, -1, np.int64)
        tv[: min(k, len(v))] = v[order[:k]]
        tp[: min(k, len(v))] = p[order[:k]]
        out["topk_values"].append(tv)
        out["topk_positions"].append(tp)
        kb = cfg.bottom_k
        order_b = sorted(range(len(v)), key=lambda i: (float(v[i]), int(p[i])))
        bv = np.full(kb, np.inf, np.float32)
        bp = np.full(kb, -1, np.int64)
        bv[: min(kb, len(v))] = v[order_b[:kb]]
        bp[: min(kb, len(v))] = p[order_b[:kb]]
        out["bottomk_values"].append(bv)
        out["bottomk_positions"].append(bp)
        out["count"].append(len(v))
        mean = float(np.mean(v.astype(np.float64))) if len(v) else 0.0
        out["mean"].append(mean)
        out["m2"].append(float(np.sum((v.astype(np.float64) - mean) ** 2)) if len(v) else 0.0)
        out["min"].append(v.min() if len(v) else np.inf)
        out["max"].append(v.max() if len(v) else -np.inf)
        out["positive"].append(int((v > 0).sum()))
        out["nonfinite"].append(int((~fin).sum()))
        bins = np.searchsorted(edges, v, side="left")  # number of edges strictly below
        out["hist"].append(np.bincount(bins, minlength=cfg.n_bins))
        r, s = cfg.samples_per_stratum, cfg.n_strata
        sv = np.zeros((s, r), np.float32)
        sp = np.full((s, r), -1, np.int64)
        sq = np.full((s, r), -1, np.int64)
        pri = ph[fin] ^ nh[j]
        st = strata[bins]
        for c in range(s):
            idx = [i for i in range(len(v)) if st[i] == c]
            idx.sort(key=lambda i: (-int(pri[i]), int(p[i])))
            idx = idx[:r]
            sv[c, : len(idx)] = v[idx]
            sp[c, : len(idx)] = p[idx]
            sq[c, : len(idx)] = pri[idx]
        out["sample_values"].append(sv)
        out["sample_positions"].append(sp)
        out["sample_priority"].append(sq)
    return {k: np.stack(v) if isinstance(v[0], np.ndarray) else np.array(v) for k, v in out.items()}


def assert_matches(stats, oracle: dict, moments_rtol: float = 1e-9) -> None:
    """Exact equality for every discrete statistic, ``moments_rtol`` for mean/M2."""
    got = {k: v.numpy() for k, v in stats.to_tensors().items()}
    for name, want in oracle.items():
        g = got[name]
        assert g.shape == want.shape, (name, g.shape, want.shape)
        if name in ("mean", "m2"):
            np.testing.assert_allclose(g, want, rtol=moments_rtol, atol=moments_rtol, err_msg=name)
        else:
            bad = np.argwhere(~((g == want) | (np.isnan(g.astype(float)) & np.isnan(want.astype(float)))))
            assert bad.size == 0, (f"{name}: first mismatches at {bad[:5].tolist()}: "
                                   f"got {g[tuple(bad[0])]} want {want[tuple(bad[0])]}")
