"""The refinement agent's proposals, one function per kind; the loop keeps one only if the train score rises.

Each function reads the current modes on the workspace's train batch and returns ``(why, new modes)``
candidates: pruning false positives, generalising a token set to its shape, context
restriction of imprecise conditions, dropping or merging modes, and new conditions for false negatives.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import numpy as np
import torch

from ..explanations.conditions import shifted
from ..explanations.model import AllOf, Condition, Mode, PrevTokenIn, TokenIn, TokenRegex
from ..scoring.batch import score_conditions
from .base import AgentConfig
from .workspace import SHAPE_REGEXES, Workspace, atoms, build_mode, candidates, key_piece


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
            keys = sorted({key_piece(ws.vocab, i) for i in prev_s[hit & valid_s].tolist()} - {""})
            if keys and len(keys) <= 12:
                ctx = AllOf((atom, PrevTokenIn(tuple(keys), 1)))
                rest = [x for k, x in enumerate(parts) if k != a_i]
                props.append((f"restrict {atom.describe()} to context in mode {mi}",
                              [*modes[:mi], build_mode(ws, [*rest, ctx]), *modes[mi + 1:]]))
    return props


def drop_or_merge(agent: Agent, modes: list[Mode], active: torch.Tensor) -> list[Proposal]:
    """Weak modes dropped; near-duplicate modes (similar meaning) merged."""
    ws = agent.ws
    props: list[Proposal] = []
    # Weak modes, and near-duplicate modes (merged when that costs at most the parsimony tolerance).
    if len(modes) > 1:
        for mi in range(len(modes)):
            props.append((f"drop weak mode {mi}", modes[:mi] + modes[mi + 1:]))
        order = np.argsort([m.strength for m in modes])
        for a, b in itertools.pairwise(order):
            lo, hi = sorted((int(a), int(b)))
            if not agent.similar(modes[lo], modes[hi], active):
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
        cands = [c for c in candidates(ws, missed) if c not in used]
        if cands:
            sc = score_conditions(ws.ev, cands, ws.batch, positives=missed)
            ok = np.flatnonzero((sc.focus_hits > 0) & (sc.mean_act >= agent.cfg.min_precision * ws.threshold))
            for j in ok[np.argsort(-sc.r[ok])][:3]:
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


def proposals(agent: Agent, modes: list[Mode], kept: list[Condition],
              active: torch.Tensor) -> list[Proposal]:
    """Every proposal of one refinement step, in a fixed order (ties go to the earlier one)."""
    return (prune(agent, modes) + generalise(agent, modes, active) + restrict_context(agent, modes, active)
            + drop_or_merge(agent, modes, active) + cover_missed(agent, modes, active))
