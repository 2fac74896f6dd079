"""The offline agent's working state and vocabulary of atomic conditions.

A :class:`Workspace` holds the train evidence as one batch with the condition evaluator and the exec
simulator; the helpers build modes from conditions (merged token sets, strength, rendered text) and
split them back into atoms. Every role of the loop — offline or LLM — works on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..explanations.conditions import ConditionEvaluator, shifted
from ..explanations.model import Condition, Explanation, Mode, PrevTokenIn, TokenIn, TokenRegex
from ..scoring.evidence import NeuronEvidence, Window, WindowBatch
from ..scoring.simulate import ExecSimulator
from .render import render_mode

SHAPE_REGEXES = (
    TokenRegex(r"^\d+$"), TokenRegex(r"^[A-Z][a-z]+$", case_sensitive=True),
    TokenRegex(r"^[A-Z]+$", case_sensitive=True),
    TokenRegex(r"^[^\w\s]+$"), TokenRegex(r"^[a-z]+$", case_sensitive=True), TokenRegex("ing$"), TokenRegex("ed$"),
    TokenRegex("ly$"), TokenRegex("tion$"), TokenRegex("s$"),
)

ProbeFn = Callable[[list[Mode], int], list[Window]]
"""``probe(modes, n)`` → up to n new windows per mode (with real activations) where its conditions fire."""
FeatureFn = Callable[[WindowBatch, torch.Tensor], np.ndarray]
"""``features(batch, token_mask)`` → (n, D) float32 contextual embeddings of the masked scored tokens."""


def key_piece(vocab, i: int) -> str:
    return vocab.pieces[int(i)].strip()


class Workspace:
    """Train evidence as a batch, with the evaluator and the exec simulator."""

    def __init__(self, evidence: NeuronEvidence, evaluator: ConditionEvaluator, active_frac: float = 0.2) -> None:
        self.evidence = evidence
        self.active_frac = active_frac
        self.vocab = evidence.vocab
        self.ev = evaluator
        self.sim = ExecSimulator(self.vocab, evaluator)
        self.windows: list[Window] = list(evidence.train)
        self.rebuild()

    def rebuild(self) -> None:
        self.batch = WindowBatch.build(self.windows)
        y = self.batch.acts
        self.max = float(y.max()) if y.numel() else 0.0
        # The activating threshold follows the configured share of the (possibly probe-enlarged) maximum.
        self.threshold = self.max * self.active_frac

    def score(self, modes: list[Mode]) -> float:
        if not modes or not any(m.conditions for m in modes):
            return 0.0
        e = Explanation(self.evidence.layer, self.evidence.index, [m for m in modes if m.conditions])
        s = self.sim.simulate([e], self.batch)[0]
        from ..scoring.corr import pearson_ref

        return float(pearson_ref(s.whole[None], self.batch.acts)[0])

    def fires(self, mode: Mode) -> torch.Tensor:
        return self.ev.evaluate_mode(mode, self.batch.ids, self.batch.seg)[self.batch.scored]


def candidates(ws: Workspace, active: torch.Tensor) -> list[Condition]:
    b, vocab = ws.batch, ws.vocab
    scored_idx = torch.nonzero(b.scored).squeeze(1)
    pos = scored_idx[active]
    out: list[Condition] = []
    seen: set[Condition] = set()

    def add(c: Condition) -> None:
        if c not in seen:
            seen.add(c)
            out.append(c)

    for i in torch.unique(b.ids[pos]).tolist():
        k = key_piece(vocab, i)
        if k:
            add(TokenIn((k,)))
    for off in (1, 2):
        prev, valid = shifted(b.ids, b.seg, off)
        for i in torch.unique(prev[pos][valid[pos]]).tolist():
            k = key_piece(vocab, i)
            if k:
                add(PrevTokenIn((k,), off))
    for c in SHAPE_REGEXES:
        add(c)
    return out


def merge_conditions(conds: list[Condition]) -> list[Condition]:
    """Token sets of the same kind/offset become one condition; other conditions stay as they are."""
    tokens: list[str] = []
    prev: dict[int, list[str]] = {}
    rest: list[Condition] = []
    for c in conds:
        if isinstance(c, TokenIn) and not c.case_sensitive:
            tokens += list(c.tokens)
        elif isinstance(c, PrevTokenIn) and not c.case_sensitive:
            prev.setdefault(c.offset, []).extend(c.tokens)
        else:
            rest.append(c)
    out: list[Condition] = []
    if tokens:
        out.append(TokenIn(tuple(tokens)))
    for off, toks in sorted(prev.items()):
        out.append(PrevTokenIn(tuple(toks), off))
    return out + rest


def atoms(mode: Mode) -> list[Condition]:
    """A mode's conditions split back into atomic ones (one token each)."""
    out: list[Condition] = []
    for c in mode.conditions:
        if isinstance(c, TokenIn):
            out += [TokenIn((t,), c.case_sensitive) for t in c.tokens]
        elif isinstance(c, PrevTokenIn):
            out += [PrevTokenIn((t,), c.offset, c.case_sensitive) for t in c.tokens]
        else:
            out.append(c)
    return out


def with_strength(ws: Workspace, mode: Mode) -> Mode:
    """Sets the mode's strengths from the train batch: each condition's mean activation where it fires (graded),
    the mode's typical strength the mean where any fires; renders its text."""
    f = ws.fires(mode)
    mode.strength = float(ws.batch.acts[f].mean()) if bool(f.any()) else 0.0
    if mode.conditions:
        masks = ws.ev.evaluate_many(mode.conditions, ws.batch.ids, ws.batch.seg)[:, ws.batch.scored]
        y = ws.batch.acts
        mode.condition_strengths = [float(y[m].mean()) if bool(m.any()) else 0.0 for m in masks]
    return render_mode(mode)


LEVEL_GAP = 1.6
"""Atoms of one mode whose mean activations differ by at least this ratio are kept as separate strength levels."""
MAX_LEVELS = 4


def levels(means: np.ndarray) -> np.ndarray:
    """(n,) level index of each atom from its mean activation: sorted means are cut where the ratio between
    neighbours is ≥ ``LEVEL_GAP`` (at most ``MAX_LEVELS`` levels, the widest gaps first); 0 = strongest."""
    n = len(means)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-means, kind="stable")
    srt = np.maximum(means[order], 1e-9)
    ratio = srt[:-1] / srt[1:]
    cuts = [int(i) for i in np.argsort(-ratio, kind="stable")[: MAX_LEVELS - 1] if ratio[i] >= LEVEL_GAP]
    level_sorted = np.zeros(n, dtype=np.int64)
    for c in sorted(cuts):
        level_sorted[c + 1 :] += 1
    out = np.empty(n, dtype=np.int64)
    out[order] = level_sorted
    return out


def build_mode(ws: Workspace, conds: list[Condition], kind: str = "mode") -> Mode:
    """One mode of these atomic conditions with graded strength: atoms are grouped into strength levels
    (see :func:`levels`), token sets merged within a level, each resulting condition with its own strength."""
    from ..scoring.batch import score_conditions

    parts = atoms(Mode("", conditions=list(conds)))
    if len(parts) > 1:
        means = np.asarray(score_conditions(ws.ev, parts, ws.batch).mean_act, dtype=np.float64)
        lev = levels(means)
        merged: list[Condition] = []
        for k in range(int(lev.max()) + 1 if len(lev) else 0):
            merged += merge_conditions([c for c, v in zip(parts, lev, strict=True) if v == k])
        seen: set[Condition] = set()
        merged = [c for c in merged if not (c in seen or seen.add(c))]
    else:
        merged = merge_conditions(parts)
    return with_strength(ws, Mode(label="", conditions=merged, kind=kind))
