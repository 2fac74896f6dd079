"""Evaluation metrics: mode recall/precision by activation overlap, the distribution of mode counts, the
polysemantic rule, confidence intervals, paired comparisons and the Wilcoxon signed-rank test (implemented
here: scipy is not a runtime dependency)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

POLY_MIN_MEANINGS = 2
POLY_MIN_COVERAGE = 0.10
POLYSEMANTIC_RULE = (f"a neuron is polysemantic when its explanation has at least {POLY_MIN_MEANINGS} meanings "
                     f"(executable modes of kind `mode`, the background term excluded) each of which fires on at least "
                     f"{POLY_MIN_COVERAGE:.0%} of the neuron's held-out top activations (the mode's held-out "
                     f"`coverage`: `explanation.modes[k].scores.coverage` in the explain rows)")


@dataclass
class ModeMatch:
    recall: float
    """Share of true modes matched by an explained mode (IoU of their firing sets ≥ threshold)."""
    precision: float
    """Share of explained modes matched to a true mode."""
    n_true: int
    n_found: int
    pairs: list[tuple[int, int, float]]
    """(explained mode, true mode, IoU) of each match."""


def iou_matrix(found: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(E, K) intersection-over-union of the firing sets ``found (E, T)`` and ``true (K, T)`` (bool)."""
    f = found.astype(np.float32)
    t = true.astype(np.float32)
    inter = f @ t.T
    union = f.sum(1)[:, None] + t.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match_modes(found: np.ndarray, true: np.ndarray, groups: list[list[int]] | None = None,
                threshold: float = 0.5) -> ModeMatch:
    """Greedy one-to-one matching by decreasing IoU (≥ ``threshold``); ``groups`` merge true modes first.

    found: (E, T) bool firing sets of the explained modes; true: (K, T) bool of the true modes.
    """
    if groups:
        true = np.stack([true[g].any(0) for g in groups]) if len(groups) else true[:0]
    iou = iou_matrix(found, true) if len(found) and len(true) else np.zeros((len(found), len(true)))
    pairs: list[tuple[int, int, float]] = []
    used_f, used_t = set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < threshold:
            break
        if i in used_f or j in used_t:
            continue
        used_f.add(i)
        used_t.add(j)
        pairs.append((i, j, float(iou[i, j])))
    k, e = len(true), len(found)
    return ModeMatch(recall=len(pairs) / k if k else 1.0, precision=len(pairs) / e if e else 0.0, n_true=k,
                     n_found=e, pairs=pairs)


def mean_ci(values: np.ndarray | list[float], seed: int = 0, n_boot: int = 2000, level: float = 0.95
            ) -> tuple[float, float, float]:
    """(mean, low, high): the mean and a bootstrap percentile confidence interval (seeded)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (float("nan"),) * 3
    if len(x) == 1:
        return (float(x[0]),) * 3
    rng = np.random.default_rng(seed)
    boots = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def _norm_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def wilcoxon(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of the paired samples: (statistic, p-value).

    Zero differences are dropped (Wilcoxon's convention), tied |differences| get average ranks, and the
    p-value uses the normal approximation with the tie correction of the variance (no continuity
    correction) — scipy's ``wilcoxon(x, y, method="approx")``. The statistic is min(W+, W-).
    """
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    d = d[np.isfinite(d) & (d != 0)]
    n = len(d)
    if n == 0:
        return 0.0, 1.0
    a = np.abs(d)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(n)
    sorted_a = a[order]
    i = 0
    tie_term = 0.0
    while i < n:
        j = i
        while j + 1 < n and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - tie_term / 48
    stat = min(w_plus, w_minus)
    if var <= 0:
        return stat, 1.0
    z = (stat - mean) / math.sqrt(var)
    return stat, min(1.0, 2 * _norm_sf(abs(z)))


def count_distribution(counts: Sequence[int]) -> dict:
    """The distribution of per-neuron counts: n, mean, min, quartiles (numpy's linear interpolation), median, max
    and how many neurons have each count (``{count: neurons}``, every count from min to max listed)."""
    x = np.asarray(counts, dtype=np.int64)
    if len(x) == 0:
        return {"n": 0, "mean": float("nan"), "min": None, "q1": None, "median": None, "q3": None, "max": None,
                "counts": {}}
    q1, med, q3 = (float(v) for v in np.quantile(x, [0.25, 0.5, 0.75]))
    lo, hi = int(x.min()), int(x.max())
    return {"n": len(x), "mean": float(x.mean()), "min": lo, "q1": q1, "median": med, "q3": q3, "max": hi,
            "counts": {k: int((x == k).sum()) for k in range(lo, hi + 1)}}


def is_polysemantic(coverages: Sequence[float], min_meanings: int = POLY_MIN_MEANINGS,
                    min_coverage: float = POLY_MIN_COVERAGE) -> bool:
    """``POLYSEMANTIC_RULE``: ``coverages`` are the held-out coverages of the explanation's meanings."""
    return sum(1 for c in coverages if c >= min_coverage) >= min_meanings


def summarize(items: Sequence[dict], keys: Sequence[str], seed: int = 0) -> dict:
    """``{"n": .., key: {"mean", "ci95"}}`` over the items' values of each key."""
    out: dict = {"n": len(items)}
    for k in keys:
        m, lo, hi = mean_ci([it[k] for it in items], seed)
        out[k] = {"mean": m, "ci95": [lo, hi]}
    return out


def by_group(items: Sequence[dict], group: str, keys: Sequence[str], seed: int = 0) -> dict:
    """``{"all": summarize(items), value: summarize(items with item[group] == value), ..}`` (groups sorted)."""
    out = {"all": summarize(items, keys, seed)}
    for g in sorted({it[group] for it in items}):
        out[g] = summarize([it for it in items if it[group] == g], keys, seed)
    return out


def paired(items: Sequence[dict], a: str, b: str, key: str = "score") -> dict | None:
    """Method ``a`` against ``b`` on the neurons both explained (items: ``neuron``, ``method``, ``key``):
    mean of a − b, how often each is higher, ties, and the two-sided Wilcoxon signed-rank p-value."""
    by: dict = {}
    for it in items:
        by.setdefault(it["neuron"], {})[it["method"]] = it[key]
    pairs = [(v[a], v[b]) for v in by.values() if a in v and b in v]
    if not pairs:
        return None
    x, y = np.asarray(pairs, dtype=np.float64).T
    stat, p = wilcoxon(x, y)
    return {"a": a, "b": b, "key": key, "n": len(pairs), "mean_diff": float(np.mean(x - y)), "wilcoxon_stat": stat,
            "p": p, "a_better": int((x > y).sum()), "b_better": int((x < y).sum()), "ties": int((x == y).sum())}
