"""Context shifts: a few neighbouring words that raise or lower the neuron's activation on whatever token they
are next to, added to what the meanings and the background predict.

A token look-up table (and a meaning's per-token levels) says how strongly each word fires on average; the
neighbouring word moves it. On the eval's 200 real MiniLM neurons, a backfitted additive model ``level[token] +
shift[previous token] + shift[next token]`` fitted on the train windows lifts held-out Score over the token
table by +0.027 — the 20 largest shifts alone by +0.016, the 50 largest by +0.020 (``additive`` rows of
``benchmarks/bench_context_headroom.py``; MiniLM is an encoder and reads both sides). A short list of "right
after *def* +0.4, right before *(* −0.2" is something a reader can apply, where a table of thousands of word
pairs (+0.031 to +0.039) is not.

The shifts are chosen greedily on train data only: each step takes the neighbour whose leave-one-window-out
shift (the mean residual where it is the neighbour, over the *other* train windows, shrunk by ``shrink``
pseudo-occurrences toward 0) removes the most squared residual, while that is at least ``min_gain`` of the
train variance; then the chosen shifts are refitted together on all train windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..explanations.conditions import following, shifted
from ..explanations.model import Mode, NextTokenIn, PrevTokenIn
from .render import render_context


@dataclass(frozen=True)
class Shift:
    """One context shift: ``side`` −1 (the previous token is ``key``) or +1 (the next token is), the activation
    added where it holds, and the share of train variance it removed when chosen (cross-validated)."""

    side: int
    key: int
    shift: float
    gain: float


def _lowo(r: np.ndarray, cand: np.ndarray, win: np.ndarray, n_cand: int, n_win: int, shrink: float) -> np.ndarray:
    """(P,) residuals, (P,) candidate of each (token, neighbour) pair, (P,) its window → (P,) the candidate's
    leave-one-window-out shift at each pair: mean residual over the candidate's pairs in other windows,
    shrunk by ``shrink`` pseudo-pairs toward 0."""
    cell = cand * n_win + win
    s_cw = np.bincount(cell, weights=r, minlength=n_cand * n_win)
    n_cw = np.bincount(cell, minlength=n_cand * n_win).astype(np.float64)
    s_c = np.bincount(cand, weights=r, minlength=n_cand)
    n_c = np.bincount(cand, minlength=n_cand).astype(np.float64)
    return (s_c[cand] - s_cw[cell]) / (n_c[cand] - n_cw[cell] + shrink)


def fit_shifts(y: np.ndarray, base: np.ndarray, prev_key: np.ndarray, next_key: np.ndarray, window: np.ndarray, *,
               max_shifts: int = 12, min_gain: float = 0.002, min_count: int = 4,
               shrink: float = 2.0) -> list[Shift]:
    """Greedy context shifts over a prediction (see the module docstring).

    y, base: (T,) activations and the prediction without shifts (cross-validated, so that the residual is what
    a held-out token would show); prev_key, next_key: (T,) int key of each token's previous / next token, −1
    where there is none; window: (T,) int train window of each token. A candidate must be the neighbour of at
    least ``min_count`` tokens in at least two windows. Returns the shifts, refitted jointly (largest gain
    first)."""
    y = np.asarray(y, np.float64)
    r = y - np.asarray(base, np.float64)
    sst = float(((y - y.mean()) ** 2).sum())
    if sst <= 0 or max_shifts <= 0:
        return []
    win = np.asarray(window, np.int64)
    n_win = int(win.max()) + 1 if win.size else 0
    # (token, neighbour) pairs of both sides: candidate id = side-offset key, so previous and next never collide.
    keys = [np.asarray(prev_key, np.int64), np.asarray(next_key, np.int64)]
    n_key = int(max(int(k.max()) if k.size else -1 for k in keys)) + 1
    tok = np.concatenate([np.flatnonzero(k >= 0) for k in keys])
    if tok.size == 0:
        return []
    # Candidates numbered densely over the neighbours present (the per-window cells below are n_cand × n_win).
    raw, cand = np.unique(np.concatenate([keys[s][keys[s] >= 0] + s * n_key for s in (0, 1)]), return_inverse=True)
    n_cand = len(raw)
    pw = win[tok]
    count = np.bincount(cand, minlength=n_cand)
    n_wins = np.bincount(np.unique(cand * n_win + pw) // n_win, minlength=n_cand)
    eligible = (count >= min_count) & (n_wins >= 2)
    chosen: list[tuple[int, float]] = []
    for _ in range(max_shifts):
        rp = r[tok]
        s = _lowo(rp, cand, pw, n_cand, n_win, shrink)
        gain = np.bincount(cand, weights=rp ** 2 - (rp - s) ** 2, minlength=n_cand)
        gain[~eligible] = -np.inf
        for c, _ in chosen:
            gain[c] = -np.inf
        best = int(np.argmax(gain))
        if not np.isfinite(gain[best]) or gain[best] < min_gain * sst:
            break
        at = cand == best
        r[tok[at]] -= s[at]  # the held-out-like residual after this shift, for the next choice
        chosen.append((best, float(gain[best] / sst)))
    if not chosen:
        return []
    values = joint_values(y, np.asarray(base, np.float64), [tok[cand == c] for c, _ in chosen], shrink)
    return [Shift(side=-1 if raw[c] < n_key else 1, key=int(raw[c] % n_key), shift=float(v), gain=g)
            for (c, g), v in zip(chosen, values, strict=True)]


def joint_values(y: np.ndarray, base: np.ndarray, members: list[np.ndarray], shrink: float) -> np.ndarray:
    """(T,) activations, (T,) prediction, the token indices where each shift holds → (S,) the shifts refitted
    together on all of them (backfitting: each the shrunk mean residual left by the others)."""
    r0 = np.asarray(y, np.float64) - np.asarray(base, np.float64)
    values = np.zeros(len(members))
    total = np.zeros_like(r0)  # the summed shift at each token
    for _ in range(6):
        for i, m in enumerate(members):
            total[m] -= values[i]  # the others' shifts only
            values[i] = float((r0[m] - total[m]).sum() / (len(m) + shrink))
            total[m] += values[i]
    return values


def apply_shifts(shifts: list[Shift], prev_key: np.ndarray, next_key: np.ndarray) -> np.ndarray:
    """(T,) the summed shift at each token (keys as in :func:`fit_shifts`)."""
    out = np.zeros(len(prev_key), np.float64)
    for s in shifts:
        out += np.where((prev_key if s.side < 0 else next_key) == s.key, s.shift, 0.0)
    return out


_KEYS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def vocab_keys(vocab) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct normalised token strings, (V,) int key of each vocabulary id, −1 for an empty piece):
    the keys ``prev_token`` / ``next_token`` conditions compare (cached per vocabulary)."""
    hit = _KEYS.get(id(vocab))
    if hit is None or len(hit[1]) != len(vocab.pieces):
        uniq, kid = np.unique(np.asarray(vocab.keys(False), dtype=str), return_inverse=True)
        kid = np.where(np.char.str_len(uniq.astype(str))[kid] > 0, kid, -1)
        hit = _KEYS[id(vocab)] = (uniq, kid)
    return hit


def neighbour_keys(vocab, ids: torch.Tensor, seg: torch.Tensor, scored: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(T_all,) ids, segments, scored mask → ((T,), (T,)) the key of each scored token's previous and next
    token in its segment (−1 where there is none)."""
    _, kid = vocab_keys(vocab)
    prev, pv = shifted(ids, seg, 1)
    nxt, nv = following(ids, seg)
    sc = scored.cpu().numpy()
    p = np.where(pv.cpu().numpy(), kid[prev.cpu().numpy()], -1)[sc]
    n = np.where(nv.cpu().numpy(), kid[nxt.cpu().numpy()], -1)[sc]
    return p, n


def context_term(ws, cfg, modes: list[Mode]) -> tuple[Mode | None, dict]:
    """The explanation's context term over its modes (meanings and background) on the train batch, or None
    when no neighbour earns a shift; and a log entry. Off with ``cfg.context_shifts == 0``."""
    if cfg.context_shifts <= 0 or ws.batch.n_tokens == 0:
        return None, {"shifts": 0}
    b = ws.batch
    prev, nxt = neighbour_keys(ws.vocab, b.ids, b.seg, b.scored)
    base = ws.predict_cv(modes).numpy()
    shifts = fit_shifts(b.acts.numpy(), base, prev, nxt, b.window.numpy(), max_shifts=cfg.context_shifts,
                        min_gain=cfg.context_min_gain, shrink=cfg.context_shrink)
    if not shifts:
        return None, {"shifts": 0}
    uniq, _ = vocab_keys(ws.vocab)
    conds = [PrevTokenIn((str(uniq[s.key]),), 1) if s.side < 0 else NextTokenIn((str(uniq[s.key]),)) for s in shifts]
    term = render_context(Mode(label="context", conditions=conds, condition_strengths=[s.shift for s in shifts],
                               kind="context", strength=float(np.mean([abs(s.shift) for s in shifts]))))
    before, after = ws.score(modes), ws.score([*modes, term])
    return term, {"shifts": len(shifts), "gain": float(sum(s.gain for s in shifts)),
                  "train_score_without": before, "train_score_with": after}

