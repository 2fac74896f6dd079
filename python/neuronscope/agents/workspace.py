"""The offline agent's working state and vocabulary of atomic conditions.

A :class:`Workspace` holds the train evidence as one batch with the condition evaluator and the exec
simulator; the helpers build modes from conditions (merged token sets, strength, rendered text) and
split them back into atoms. Every role of the loop — offline or LLM — works on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..explanations.conditions import ConditionEvaluator, segment_starts, shifted
from ..explanations.model import MAX_OFFSET, Condition, Mode, Position, PrevTokenIn, TokenIn, TokenRegex
from ..scoring.evidence import NeuronEvidence, Window, WindowBatch
from ..scoring.simulate import ExecSimulator, combine_modes
from .render import render_mode

SHAPE_REGEXES = (
    TokenRegex(r"^\d+$"), TokenRegex(r"^[A-Z][a-z]+$", case_sensitive=True),
    TokenRegex(r"^[A-Z]+$", case_sensitive=True),
    TokenRegex(r"^[^\w\s]+$"), TokenRegex(r"^[a-z]+$", case_sensitive=True), TokenRegex("ing$"), TokenRegex("ed$"),
    TokenRegex("ly$"), TokenRegex("tion$"), TokenRegex("s$"),
)
POSITION_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
"""The ``position`` ranges ``[0, k)`` the offline agent tries: nested, so a mode made of several is graded
by position (each range keeps its own strength; the prediction is the strongest range a token is in)."""
assert POSITION_LADDER[-1] <= MAX_OFFSET

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
        # (T,) each scored token's position in its segment: its document position below MAX_OFFSET (windows
        # carry that much left context from their document), at least MAX_OFFSET otherwise.
        b = self.batch
        self.position = (torch.arange(b.ids.shape[0]) - segment_starts(b.seg))[b.scored]
        self._masks: dict[Condition, torch.Tensor] = {}
        self._cv: dict[Condition, torch.Tensor] = {}
        # Two halves of the train windows (alternating), for choices that must replicate across both (context
        # sets in ``restrict_context``). Scores cross-validate by window (``atom_rows_cv``): an atom whose
        # strength is fitted to a single occurrence cannot buy train score it would not keep.
        self.fold = (self.batch.window % 2).to(torch.bool)  # (T,) True: fold 1

    def mask(self, cond: Condition) -> torch.Tensor:
        """(T,) bool: where ``cond`` fires on the scored train tokens (cached per batch: the loop asks for the
        same atoms thousands of times)."""
        m = self._masks.get(cond)
        if m is None:
            m = self._masks[cond] = self.ev.evaluate(cond, self.batch.ids, self.batch.seg)[self.batch.scored]
        return m

    def masks(self, conds: list[Condition]) -> torch.Tensor:
        """(C, T) bool: :meth:`mask` of each condition."""
        if not conds:
            return torch.zeros((0, self.batch.n_tokens), dtype=torch.bool)
        return torch.stack([self.mask(c) for c in conds])

    def replicated(self, cond: Condition, active: torch.Tensor) -> bool:
        """Whether ``cond`` fires on activating tokens in both halves of the train windows (``fold``).

        Context atoms are picked from hundreds of candidates by what precedes the activating tokens; one that
        fits a single window's tokens scores there by chance, and the cross-validated score, which refits
        strengths but not the choice, cannot tell (MiniLM 2/823: train 0.28, held out 0.16). A token atom
        needs no such test: seen in one window, its cross-validated level there is 0."""
        hit = self.mask(cond) & active
        return bool((hit & self.fold).any()) and bool((hit & ~self.fold).any())

    def predict(self, modes: list[Mode]) -> torch.Tensor:
        """(T,) float32: the exec simulator's prediction of these modes on the train batch (same rule as
        ``ExecSimulator``: graded per condition, the largest magnitude where several modes fire, plus the
        context term's shifts)."""
        rows, shift = [], torch.zeros(self.batch.n_tokens, dtype=torch.float32)
        for m in modes:
            if not m.conditions:
                continue
            masks = self.masks(m.conditions).to(torch.float32)
            parts = masks * torch.tensor(m.strengths, dtype=torch.float32)[:, None]
            if m.additive:
                shift = shift + parts.sum(0)
            else:
                rows.append(combine_modes(parts))
        if not rows:
            return shift
        return combine_modes(torch.stack(rows)) + shift

    def atom_rows_cv(self, conds: list[Condition]) -> torch.Tensor:
        """(C, T) float32: each condition's cross-validated level where it fires — its mean activation over
        the *other* train windows where it fires (leave one window out; 0 where it fires in no other window)
        — and 0 where it does not fire.

        Leave-one-window-out is the held-out setting in small: strengths fitted on every train window but the
        one predicted. (Two folds, used before, fitted each token on half the windows: a token look-up row
        seen in a few windows then scored 0 in the other fold, so the score undervalued every per-token
        level — the look-up table scored 0.29 on train and 0.47 held out on MiniLM 3/1258.)"""
        if not conds:
            return torch.zeros((0, self.batch.n_tokens), dtype=torch.float32)
        # Cached per atom and batch, like the masks: refinement scores the same atoms in thousands of proposals.
        missing = list(dict.fromkeys(c for c in conds if c not in self._cv))
        if missing:
            y = self.batch.acts
            win = self.batch.window
            masks = self.masks(missing).to(torch.float32)  # (C, T)
            n_win = int(win.max()) + 1 if win.numel() else 0
            s_w = torch.zeros((masks.shape[0], n_win), dtype=torch.float32).index_add_(1, win, masks * y)
            n_w = torch.zeros((masks.shape[0], n_win), dtype=torch.float32).index_add_(1, win, masks)
            num = s_w.sum(1, keepdim=True) - s_w[:, win]
            den = n_w.sum(1, keepdim=True) - n_w[:, win]
            rows = masks * torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))
            self._cv.update(zip(missing, rows, strict=True))
        return torch.stack([self._cv[c] for c in conds])

    def predict_cv(self, modes: list[Mode]) -> torch.Tensor:
        """(T,) float32: the graded prediction with every condition's strength cross-validated
        (:meth:`atom_rows_cv`)."""
        rows, shift = [], torch.zeros(self.batch.n_tokens, dtype=torch.float32)
        for m in modes:
            if not m.conditions:
                continue
            if m.additive:  # the context term's shifts are chosen cross-validated (``context_shifts``); as fitted here
                shift = shift + (self.masks(m.conditions).to(torch.float32)
                                 * torch.tensor(m.strengths, dtype=torch.float32)[:, None]).sum(0)
                continue
            rows.append(combine_modes(self.atom_rows_cv(m.conditions)))
        if not rows:
            return shift
        return combine_modes(torch.stack(rows)) + shift

    def score(self, modes: list[Mode], where: torch.Tensor | None = None) -> float:
        """The train score every decision uses: Pearson r of the cross-validated prediction (:meth:`atom_rows_cv`),
        over the scored tokens where ``where`` (T,) holds (all of them when None; strengths are fitted on all)."""
        if not modes or not any(m.conditions for m in modes):
            return 0.0
        from ..scoring.corr import pearson_ref

        pred, y = self.predict_cv(modes), self.batch.acts
        if where is not None:
            pred, y = pred[where], y[where]
        return float(pearson_ref(pred[None], y)[0])

    def fit_score(self, modes: list[Mode]) -> float:
        """Pearson r of the prediction with the strengths as they are (in-sample)."""
        if not modes or not any(m.conditions for m in modes):
            return 0.0
        from ..scoring.corr import pearson_ref

        return float(pearson_ref(self.predict(modes)[None], self.batch.acts)[0])

    def fires(self, mode: Mode) -> torch.Tensor:
        if not mode.conditions:
            return torch.zeros(self.batch.n_tokens, dtype=torch.bool)
        return self.masks(mode.conditions).any(0)


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
    if bool((ws.position[active] < POSITION_LADDER[-1]).any()):
        for k in POSITION_LADDER:
            add(Position(k))
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
    """Sets the mode's strengths from the train batch: each condition's mean activation where it fires (graded)
    and the mode's typical strength (below); renders its text."""
    f = ws.fires(mode)
    # Typical strength: the mean activation where the mode fires on activating tokens (a graded mode's weak
    # atoms also fire on weak tokens; they have their own condition strengths), else where it fires at all.
    hot = f & (ws.batch.acts >= ws.threshold) if ws.threshold > 0 else f
    pick = hot if bool(hot.any()) else f
    mode.strength = float(ws.batch.acts[pick].mean()) if bool(pick.any()) else 0.0
    if mode.conditions:
        masks = ws.masks(mode.conditions).to(torch.float32)
        n = masks.sum(1)
        means = (masks @ ws.batch.acts) / n.clamp(min=1)
        mode.condition_strengths = torch.where(n > 0, means, torch.zeros_like(means)).tolist()
    return render_mode(mode)


def build_mode(ws: Workspace, conds: list[Condition], kind: str = "mode") -> Mode:
    """One mode of these atomic conditions with graded strength: every atom (one token, one context, one shape)
    keeps its own strength — its mean train activation where it fires — strongest first, so one meaning
    with several activation levels stays one mode (the text groups the atoms back into sets)."""
    parts = list(dict.fromkeys(atoms(Mode("", conditions=list(conds)))))
    mode = with_strength(ws, Mode(label="", conditions=parts, kind=kind))
    if mode.condition_strengths is not None and len(parts) > 1:
        order = np.argsort(-np.asarray(mode.condition_strengths), kind="stable")
        mode.conditions = [parts[i] for i in order]
        mode.condition_strengths = [mode.condition_strengths[i] for i in order]
        render_mode(mode)
    return mode
