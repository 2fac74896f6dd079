"""Scoring thousands of candidate conditions at once against one neuron's activations.

A token-level condition (``token``, ``token_regex``, ``prev_token``) is a function of a single token id
(at offset 0 or -k), so every statistic Pearson needs is linear in its vocabulary mask: with ``cnt[v]``
the number of scored tokens whose (shifted) id is v and ``sy[v]`` the sum of their centred activations,
``Σx = mask·cnt`` and ``Σxy = mask·sy`` (x is 0/1 so ``Σx² = Σx``). Scoring C candidates over T tokens
is then two bincounts per offset plus a ``(C, V) @ (V, 3)`` product instead of C passes over T tokens.
Other conditions are evaluated as (chunk, T) masks and reduced with one matrix product each chunk.
Both paths give exactly Pearson's r of the 0/1 indicator against the activations (float64).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..explanations.conditions import ConditionEvaluator, shifted
from ..explanations.model import Condition, PrevTokenIn, TokenIn, TokenRegex
from .corr import pearson_from_sums
from .evidence import WindowBatch


@dataclass
class ConditionScores:
    """Per candidate condition (C,) over the scored tokens of a WindowBatch."""

    r: np.ndarray
    """float64 Pearson r of the 0/1 firing indicator against the true activations (0 if it never/always fires)."""
    fires: np.ndarray
    """int64 number of scored tokens where the condition holds."""
    act_sum: np.ndarray
    """float64 sum of true activations where it holds (mean = act_sum / fires)."""
    focus_hits: np.ndarray
    """int64 how many of the positive tokens (default: focus tokens of ``top`` windows) it covers."""

    @property
    def mean_act(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.fires > 0, self.act_sum / np.maximum(self.fires, 1), 0.0)


def _offset_of(c: Condition) -> int | None:
    if isinstance(c, (TokenIn, TokenRegex)):
        return 0
    if isinstance(c, PrevTokenIn):
        return c.offset
    return None


def score_conditions(evaluator: ConditionEvaluator, conds: Sequence[Condition], batch: WindowBatch,
                     chunk: int = 512, positives: torch.Tensor | None = None) -> ConditionScores:
    """Scores every condition of ``conds`` (C,) as a 0/1 predictor on ``batch``; see the module docstring.

    ``positives`` (T,) bool: the tokens ``focus_hits`` counts (default: the focus tokens of top windows).
    """
    c = len(conds)
    v = len(evaluator.vocab)
    y = batch.acts.to(torch.float64)
    n = y.numel()
    yc = y - y.mean() if n else y
    syy = float((yc * yc).sum())
    top_focus = batch.focus & batch.kind_mask("top") if positives is None else positives.to(torch.bool)
    r = np.zeros(c)
    fires = np.zeros(c, dtype=np.int64)
    act_sum = np.zeros(c)
    hits = np.zeros(c, dtype=np.int64)

    by_offset: dict[int, list[int]] = {}
    other: list[int] = []
    for i, cond in enumerate(conds):
        k = _offset_of(cond)
        (by_offset.setdefault(k, []) if k is not None else other).append(i)

    ids, seg, scored = batch.ids, batch.seg, batch.scored
    for k, members in by_offset.items():
        if k == 0:
            key = ids[scored]
        else:
            prev, valid = shifted(ids, seg, k)
            key = torch.where(valid, prev, torch.full_like(prev, v))[scored]
        key = key.cpu()
        stats = torch.stack([
            torch.bincount(key, minlength=v + 1).to(torch.float64),
            torch.bincount(key, weights=yc.cpu(), minlength=v + 1),
            torch.bincount(key, weights=y.cpu(), minlength=v + 1),
            torch.bincount(key[top_focus.cpu()], minlength=v + 1).to(torch.float64),
        ], dim=1).numpy()  # (V + 1, 4); row V = "no token at this offset", never matched
        # Sparse masks: (condition, id) pairs, so 10k candidates never make a (C, V) dense matrix.
        hit_ids = [evaluator.vocab_ids(conds[i]) for i in members]
        owner = np.repeat(np.arange(len(members)), [len(h) for h in hit_ids])
        flat = np.concatenate(hit_ids) if hit_ids else np.zeros(0, dtype=np.int64)
        agg = np.stack([np.bincount(owner, weights=stats[flat, j], minlength=len(members)) for j in range(4)], 1)
        idx = np.asarray(members)
        fires[idx] = np.rint(agg[:, 0]).astype(np.int64)
        act_sum[idx] = agg[:, 2]
        hits[idx] = np.rint(agg[:, 3]).astype(np.int64)
        r[idx] = pearson_from_sums(n, agg[:, 0], agg[:, 0], 0.0, syy, agg[:, 1])

    if other:
        cols = torch.stack([torch.ones_like(y), yc, y, top_focus.to(torch.float64)], dim=1)
        for a in range(0, len(other), chunk):
            members = other[a : a + chunk]
            m = evaluator.evaluate_many([conds[i] for i in members], ids, seg)[:, scored]
            agg = (m.to(torch.float64) @ cols).cpu().numpy()
            idx = np.asarray(members)
            fires[idx] = np.rint(agg[:, 0]).astype(np.int64)
            act_sum[idx] = agg[:, 2]
            hits[idx] = np.rint(agg[:, 3]).astype(np.int64)
            r[idx] = pearson_from_sums(n, agg[:, 0], agg[:, 0], 0.0, syy, agg[:, 1])
    return ConditionScores(r=r, fires=fires, act_sum=act_sum, focus_hits=hits)
