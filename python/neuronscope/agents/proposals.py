"""The refinement agent's proposals, one function per kind; the loop keeps one only if the train score rises.

Each function reads the current modes on the workspace's train batch and returns ``(why, new modes)``
candidates: pruning false positives, generalising a token set to its shape, context
restriction of imprecise conditions, dropping or merging modes, new conditions for false negatives, and
a graded position mode for activating tokens at the start of their documents.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import numpy as np
import torch

from ..explanations.conditions import shifted
from ..explanations.model import (
    MAX_OFFSET,
    AllOf,
    Condition,
    Mode,
    Not,
    Position,
    PrecedingRegex,
    PrevTokenIn,
    TokenIn,
    TokenRegex,
)
from ..scoring.batch import score_conditions
from .base import AgentConfig
from .render import INSIDE_BRACKETS, INSIDE_PARENS, after_words
from .workspace import POSITION_LADDER, SHAPE_REGEXES, Workspace, atoms, build_mode, candidates, key_piece


class Agent(Protocol):
    """What a proposal needs of the loop (``offline.OfflineNeuronScope``; declared here, no import back)."""

    ws: Workspace
    cfg: AgentConfig

    def similarity(self, a: Mode, b: Mode, active: torch.Tensor) -> float | None: ...

    def similar(self, a: Mode, b: Mode, active: torch.Tensor) -> bool: ...

Proposal = tuple[str, list[Mode]]


def prune(agent: Agent, modes: list[Mode]) -> list[Proposal]:
    """False-positive atoms pruned: atoms whose own mean activation is far below the mode's strength.

    Strength differences never split a mode (one meaning with graded strength is one mode: each atom keeps
    its own level, see ``workspace.build_mode``); only atoms that barely predict anything are removed.
    """
    ws, cfg = agent.ws, agent.cfg
    props: list[Proposal] = []
    for mi, m in enumerate(modes):
        parts = atoms(m)
        if len(parts) < 2:
            continue
        sc = score_conditions(ws.ev, parts, ws.batch)
        bad = [a for a, mean in zip(parts, sc.mean_act, strict=True) if mean < cfg.prune_frac * m.strength]
        if bad and len(bad) < len(parts):
            good = [a for a in parts if a not in bad]
            props.append((f"prune {len(bad)} false-positive conditions from mode {mi}",
                          [*modes[:mi], build_mode(ws, good), *modes[mi + 1:]]))
    return props


def generalise(agent: Agent, modes: list[Mode], active: torch.Tensor) -> list[Proposal]:
    """A mode's token set generalised to the shape most of its tokens share (alone or in context)."""
    ws = agent.ws
    props: list[Proposal] = []
    # Generalisation: most tokens of a mode's set share a shape → the shape itself (unseen members too).
    for mi, m in enumerate(modes):
        sets = [c for c in m.conditions if isinstance(c, TokenIn)]
        if not sets:
            continue
        toks = sets[0].tokens
        for shape in SHAPE_REGEXES:
            ids = set(ws.ev.vocab_ids(shape).tolist())
            inside = [t for t in toks if set(ws.vocab.ids_in([t]).tolist()) & ids]
            if len(inside) >= max(2, 0.6 * len(toks)):
                rest = [c for c in atoms(m) if not (isinstance(c, TokenIn) and c.tokens[0] in inside)]
                props.append((f"generalise mode {mi} to {shape.describe()}",
                              [*modes[:mi], build_mode(ws, [*rest, shape]), *modes[mi + 1:]]))
                # ... or to the shape in the contexts the set's activating tokens were seen in.
                hit = ws.fires(Mode("", conditions=[TokenIn(tuple(inside))])) & active
                prev, valid = shifted(ws.batch.ids, ws.batch.seg, 1)
                keys = sorted({key_piece(ws.vocab, i) for i in prev[ws.batch.scored][hit & valid[ws.batch.scored]]
                               .tolist()} - {""})
                if keys and len(keys) <= 12:
                    ctx = AllOf((shape, PrevTokenIn(tuple(keys), 1)))
                    props.append((f"generalise mode {mi} to {ctx.describe()}",
                                  [*modes[:mi], build_mode(ws, [*rest, ctx]), *modes[mi + 1:]]))
    return props


def restrict_context(agent: Agent, modes: list[Mode], active: torch.Tensor) -> list[Proposal]:
    """Imprecise token conditions restricted to the contexts their activating tokens had."""
    ws = agent.ws
    props: list[Proposal] = []
    # Context: an imprecise token condition (it fires far more weakly on average than on the activating
    # tokens it covers) becomes "this token right after one of the tokens seen before it when active".
    prev, valid = shifted(ws.batch.ids, ws.batch.seg, 1)
    prev_s, valid_s = prev[ws.batch.scored], valid[ws.batch.scored]
    y = ws.batch.acts
    for mi, m in enumerate(modes):
        parts = atoms(m)
        for a_i, atom in enumerate(parts):
            if not isinstance(atom, (TokenIn, TokenRegex)):
                continue
            fires = ws.mask(atom)
            hit = fires & active
            if not bool(hit.any()) or float(y[fires].mean()) >= 0.8 * float(y[hit].mean()):
                continue
            # Only contexts that recur in both train folds (alternating windows): the set is chosen from the
            # activating tokens themselves, so a context seen once would fit its own occurrence and the
            # score, which refits strengths but not the set, could not tell (held-out Score fell, 4/456).
            keys = sorted(set.intersection(*({key_piece(ws.vocab, i) for i in prev_s[hit & valid_s & (ws.fold == f)]
                                              .tolist()} for f in (False, True))) - {""})
            if keys and len(keys) <= 12:
                ctx = AllOf((atom, PrevTokenIn(tuple(keys), 1)))
                rest = [x for k, x in enumerate(parts) if k != a_i]
                props.append((f"restrict {atom.describe()} to context in mode {mi}",
                              [*modes[:mi], build_mode(ws, [*rest, ctx]), *modes[mi + 1:]]))
    return props


def context_twins(a: Mode, b: Mode) -> bool:
    """Whether two modes are the same words split by a context (``split_context``): one holds ``all(X, C)``,
    the other ``all(X, not C)``. Such modes never merge: the split was made because the context changes
    what the words mean to the neuron, and their tokens' contextual vectors are alike by construction."""
    def sides(m: Mode) -> set[tuple[Condition, Condition, bool]]:
        out = set()
        for c in m.conditions:
            if isinstance(c, AllOf) and len(c.conditions) == 2:
                base, ctx = c.conditions
                neg = isinstance(ctx, Not)
                out.add((base, ctx.condition if neg else ctx, neg))
        return out

    sa, sb = sides(a), sides(b)
    return any((base, ctx, not neg) in sb for base, ctx, neg in sa)


def drop_or_merge(agent: Agent, modes: list[Mode], active: torch.Tensor) -> list[Proposal]:
    """Weak modes dropped; near-duplicate modes (similar meaning) merged."""
    ws = agent.ws
    props: list[Proposal] = []
    # Weak modes, and near-duplicate modes (merged when that costs at most the parsimony tolerance).
    if len(modes) > 1:
        for mi in range(len(modes)):
            props.append((f"drop weak mode {mi}", modes[:mi] + modes[mi + 1:]))
        for lo, hi in itertools.combinations(range(len(modes)), 2):  # every pair: like meanings may lie apart
            if context_twins(modes[lo], modes[hi]) or not agent.similar(modes[lo], modes[hi], active):
                continue  # different meanings stay apart even when their strengths are alike
            merged = build_mode(ws, atoms(modes[lo]) + atoms(modes[hi]))
            sim = agent.similarity(modes[lo], modes[hi], active)
            props.append((f"merge modes {lo} and {hi}" + (f" (similarity {sim:.2f})" if sim is not None else ""),
                          [m for k, m in enumerate(modes) if k not in (lo, hi)] + [merged]))
    return props


def cover_missed(agent: Agent, modes: list[Mode], active: torch.Tensor) -> list[Proposal]:
    """False negatives: the best unused atomic conditions for activating tokens no mode covers."""
    ws = agent.ws
    props: list[Proposal] = []
    # False negatives: activating tokens no mode covers → the best unused atomic condition.
    fired = torch.zeros_like(active)
    for m in modes:
        fired |= ws.fires(m)
    missed = active & ~fired
    if bool(missed.any()):
        used = {a for m in modes for a in atoms(m)}
        cands = [c for c in candidates(ws, missed) if c not in used
                 and (isinstance(c, TokenIn) or ws.replicated(c, active))]
        if cands:
            sc = score_conditions(ws.ev, cands, ws.batch, positives=missed)
            ok = np.flatnonzero((sc.focus_hits > 0) & (sc.mean_act >= agent.cfg.min_precision * ws.threshold))
            ranked = ok[np.argsort(-sc.r[ok])]
            group = _missed_group(agent, [cands[int(j)] for j in ranked[:MISSED_GROUP]], active, missed)
            if len(group) >= 2:
                # A missed meaning arrives as a group of words (a category the stored evidence never showed,
                # met in the survey): one word alone rarely buys a new mode's cost, the group does.
                grouped = build_mode(ws, group)
                props.append((f"new mode for missed tokens: {grouped.description}", [*modes, grouped]))
            for j in ranked[:3]:
                c = cands[int(j)]
                alone = build_mode(ws, [c])
                sims = [agent.similarity(alone, m, active) for m in modes]
                if modes and sims[0] is not None:
                    mi = int(np.argmax(sims))  # the mode it means most alike
                else:  # no features: the mode nearest in strength
                    mi = int(np.argmin([abs(m.strength - alone.strength) for m in modes])) if modes else -1
                # With graded strength joining a mode costs nothing, so only a condition that means the same
                # (the merge gate) may join one; anything else is a candidate new mode (and pays the mode cost).
                if mi >= 0 and agent.similar(alone, modes[mi], active):
                    props.append((f"add {c.describe()} to mode {mi}",
                                  [*modes[:mi], build_mode(ws, [*atoms(modes[mi]), c]), *modes[mi + 1:]]))
                else:
                    props.append((f"new mode for missed tokens: {c.describe()}", [*modes, alone]))
    return props


MISSED_GROUP = 16
"""The best missed token conditions searched for a group that means one thing (``cover_missed``)."""


def _missed_group(agent: Agent, conds: list[Condition], active: torch.Tensor, missed: torch.Tensor) -> list[Condition]:
    """The missed token conditions of ``conds`` grouped by the merge gate (``agent.similar``: each joins the
    first group whose first member means the same) and the group with the most missed activation, best first."""
    ws = agent.ws
    groups: list[tuple[Mode, list[Condition]]] = []
    for c in conds:
        if not isinstance(c, TokenIn):
            continue
        alone = build_mode(ws, [c])
        home = next((g for seed, g in groups if agent.similar(seed, alone, active)), None)
        if home is None:
            groups.append((alone, [c]))
        else:
            home.append(c)
    best, best_mass = [], 0.0
    y = ws.batch.acts
    for _, g in groups:
        mass = float(y[ws.masks(g).any(0) & missed].sum()) if len(g) >= 2 else 0.0
        if mass > best_mass:
            best, best_mass = g, mass
    return best


def is_position_mode(m: Mode) -> bool:
    """Whether every condition of the mode is a document position (a ``position_mode`` ladder)."""
    return bool(m.conditions) and all(isinstance(c, Position) for c in m.conditions)


def position_mode(agent: Agent, modes: list[Mode], active: torch.Tensor) -> list[Proposal]:
    """A position effect: when many activating tokens are among the first tokens of their documents, a graded
    position mode (the nested ranges ``[0, k)``, ``k`` chosen by the train score) — in place of the atoms
    whose activating tokens it holds (a bag of the words that happen to open documents), or beside them.

    Token conditions come first in decomposition (specific before general), so a neuron that fires at the
    start of every document is first described by the words found there; only this proposal can replace
    them by what they share.
    """
    ws = agent.ws
    span = POSITION_LADDER[-1]
    early = active & (ws.position < span)
    n_early = int(early.sum())
    if n_early < 3 or n_early < agent.cfg.min_mode_cover * int(active.sum()):
        return []
    pos = ws.position[early]
    # Every span end from the median activating position to past the last one: the train score picks it.
    lo, hi = float(pos.float().median()), int(pos.max())
    stops = [k for k in POSITION_LADDER if k > lo and (k <= hi or k == min(x for x in POSITION_LADDER if x > hi))]

    def held(a: Condition, stop: int) -> bool:  # the atom's activating tokens are mostly inside the span
        hit = ws.mask(a) & active
        return bool(hit.any()) and float((hit & (ws.position < stop)).sum()) >= 0.8 * float(hit.sum())

    props: list[Proposal] = []
    for stop in stops:
        ladder = build_mode(ws, [Position(k) for k in POSITION_LADDER if k <= stop])
        stripped = []
        for m in modes:
            rest = [a for a in atoms(m) if not held(a, stop)]
            if rest:
                stripped.append(build_mode(ws, rest) if len(rest) < len(atoms(m)) else m)
        props += [(f"position mode: the first {stop} tokens of a document, in place of their words",
                   [*stripped, ladder]),
                  (f"position mode: the first {stop} tokens of a document", [*modes, ladder])]
    return props


SPLIT_RATIO = 1.5
"""A context that changes a token set's mean activation by this factor makes two modes (the same words
meaning different things in the two contexts); a smaller change is graded strength inside one mode."""
SPLIT_MAX_WORDS = 6
"""Only a few words are split by context: a large word set whose activation follows a context is a context
mode (any token after X), which decomposition and ``cover_missed`` propose, not one set in two contexts."""


def _context_splits(ws: Workspace, fires: torch.Tensor) -> list[tuple[Condition, torch.Tensor]]:
    """Contexts that might split the tokens where ``fires`` (T,) holds: inside brackets, and "within w tokens
    after one of these words" for the words most often seen shortly before its strongest occurrences.
    Returns ``(condition, (T,) bool where it holds)`` pairs."""
    out: list[tuple[Condition, torch.Tensor]] = []
    for pat in (INSIDE_PARENS, INSIDE_BRACKETS):
        c = PrecedingRegex(pat, MAX_OFFSET)
        out.append((c, ws.mask(c)))
    b, y = ws.batch, ws.batch.acts
    strong = fires & (y >= y[fires].median())
    prev = {}
    for k in range(1, 4):
        p, valid = shifted(b.ids, b.seg, k)
        prev[k] = torch.where(valid, p, torch.full_like(p, -1))[b.scored]
    for w in (1, 3):
        seen: dict[int, int] = {}
        for k in range(1, w + 1):
            for i, n in zip(*torch.unique(prev[k][strong & (prev[k] >= 0)], return_counts=True), strict=True):
                seen[int(i)] = seen.get(int(i), 0) + int(n)
        for i, n in sorted(seen.items(), key=lambda kv: -kv[1])[:3]:
            word = key_piece(ws.vocab, i).lower()
            if n < 2 or not word.isalnum():
                continue
            # Where the word is among the w tokens before (token ids, not the regex: the statistics only choose
            # the context; the proposal's condition is evaluated exactly when it is scored).
            where = torch.zeros_like(fires)
            for k in range(1, w + 1):
                where |= torch.isin(prev[k], torch.from_numpy(ws.vocab.ids_in([word])))
            out.append((after_words([word], w), where))
    return out


def _nearer_first(ws: Workspace, atom: Condition, first: float, second: float) -> bool:
    """Whether the atom's mean train activation where it fires is nearer ``first`` than ``second`` (log ratio)."""
    f = ws.mask(atom)
    level = max(float(ws.batch.acts[f].mean()) if bool(f.any()) else 0.0, 1e-9)
    return abs(np.log(level / first)) <= abs(np.log(level / second))


def split_context(agent: Agent, modes: list[Mode], active: torch.Tensor) -> list[Proposal]:
    """A mode's token set split by a context that changes its activation: "x inside parentheses" (strong)
    and "x outside" (weak). A change by ``SPLIT_RATIO`` or more makes two modes (the mode's other atoms going with
    the side whose level they share), a smaller one two graded levels of the mode, and a weak side below the
    activating threshold is dropped (the mode restricted to the context); the context must explain at least a
    quarter of the set's activation variance."""
    ws = agent.ws
    y = ws.batch.acts
    props: list[Proposal] = []
    for mi, m in enumerate(modes):
        toks = tuple(t for a in atoms(m) if isinstance(a, TokenIn) and not a.case_sensitive for t in a.tokens)
        if not toks or len(toks) > SPLIT_MAX_WORDS:
            continue
        base = TokenIn(toks)
        fires = ws.mask(base)
        n = int(fires.sum())
        if n < 6 or not bool((fires & active).any()):
            continue
        ys = y[fires]
        total = float(((ys - ys.mean()) ** 2).sum())
        if total <= 0:
            continue
        best = None
        for ctx, where in _context_splits(ws, fires):
            inn, out = fires & where, fires & ~where
            n_in, n_out = int(inn.sum()), int(out.sum())
            if n_in < 2 or n_out < 2:
                continue
            m_in, m_out = float(y[inn].mean()), float(y[out].mean())
            between = n_in * (m_in - float(ys.mean())) ** 2 + n_out * (m_out - float(ys.mean())) ** 2
            if between >= 0.25 * total and (best is None or between > best[0]):
                best = (between, ctx, m_in, m_out)
        if best is None:
            continue
        _, ctx, m_in, m_out = best
        rest = [a for a in atoms(m) if not (isinstance(a, TokenIn) and not a.case_sensitive)]
        inside, outside = AllOf((base, ctx)), AllOf((base, Not(ctx)))
        hi, lo = max(m_in, m_out), max(min(m_in, m_out), 1e-9)
        strong, weak = (inside, outside) if m_in >= m_out else (outside, inside)
        if lo < ws.threshold:
            # The weak side does not activate: the words mean the mode only in the strong context, so the mode
            # keeps them there (a restriction, not a second mode: "example" after "for" stays with "instance"
            # after "for" in one phrase mode instead of a mode of its own beside a mode of "example" elsewhere).
            props.append((f"restrict mode {mi} by context: {strong.describe()}",
                          [*modes[:mi], build_mode(ws, [strong, *rest]), *modes[mi + 1:]]))
        elif hi >= SPLIT_RATIO * lo:
            # The mode's other atoms go with the side whose level they share (nearer in log strength).
            near = [_nearer_first(ws, a, hi, lo) for a in rest]
            with_strong = [a for a, s in zip(rest, near, strict=True) if s]
            with_weak = [a for a, s in zip(rest, near, strict=True) if not s]
            new = [build_mode(ws, [strong, *with_strong]), build_mode(ws, [weak, *with_weak])]
            props.append((f"split mode {mi} by context: {strong.describe()} / {weak.describe()}",
                          [*modes[:mi], *new, *modes[mi + 1:]]))
        else:
            props.append((f"grade mode {mi} by context: {inside.describe()}",
                          [*modes[:mi], build_mode(ws, [inside, outside, *rest]), *modes[mi + 1:]]))
    return props


def proposals(agent: Agent, modes: list[Mode], kept: list[Condition],
              active: torch.Tensor) -> list[Proposal]:
    """Every proposal of one refinement step, in a fixed order (ties go to the earlier one)."""
    return (prune(agent, modes) + generalise(agent, modes, active) + restrict_context(agent, modes, active)
            + drop_or_merge(agent, modes, active) + cover_missed(agent, modes, active)
            + split_context(agent, modes, active)
            + (position_mode(agent, modes, active) if not any(is_position_mode(m) for m in modes) else []))
