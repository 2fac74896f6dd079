"""What makes modes distinct meanings beyond their train score, for the offline loop
(``offline.OfflineNeuronScope`` delegates here): the closed-class merge test, the class split, and freeing a
shadowed mode. ``agent`` is the OfflineNeuronScope (its workspace ``ws``, config ``cfg`` and ``log``)."""

from __future__ import annotations

import torch

from ..explanations.model import AllOf, Mode, Not, TokenIn, TokenRegex
from .concepts import (
    CATCH_ALL,
    CLOSED,
    MAX_SPLIT_SIMILARITY,
    MIN_SHARE,
    class_share,
    class_split,
    closed_concept,
    mode_tokens,
    shared_catch_all,
    shared_class,
    single_class,
    word_similarity,
)
from .workspace import atoms, build_mode


def same_class(agent, a: Mode, b: Mode, active: torch.Tensor) -> bool | None:
    """Whether the concept vocabulary's closed classes say two modes mean the same: True when most of both
    modes' activating token mass lies in one class ("while" and the Python keywords; "and/or" and
    "not/else", logic words both), False when each mode has its own, different class and they share none
    ("(" and "."), or when one mode is a class and the other lies outside every class (numbers and "delete"),
    None when the classes cannot tell (then the features decide). The catch-all classes
    (``concepts.CATCH_ALL``: any punctuation) are no evidence of one meaning."""
    ta, tb = mode_tokens(agent.ws, a, active), mode_tokens(agent.ws, b, active)
    if shared_class(ta, tb) is not None:
        return True
    # Two modes inside one catch-all class ("commas and colons" and "sentence-ending punctuation", or
    # arithmetic operators and other symbols) are no evidence either way: a planted punctuation mode's tokens
    # were split between two such sub-classes at one strength (2.52 and 2.51) on 8 of 102 planted neurons.
    # Then the features and the strengths decide.
    if shared_catch_all(ta, tb) is not None:
        return None
    ca, cb = closed_concept(ta), closed_concept(tb)
    if ca is not None and cb is not None and ca.name != cb.name:
        return False
    for c, other in ((ca, tb), (cb, ta)):  # one mode is a class, the other lies outside every class
        if (c is not None and c.name not in CATCH_ALL and other and class_share(c, other) < 1 - MIN_SHARE
                and not any(class_share(k, other) >= MIN_SHARE for k in CLOSED if k.name not in CATCH_ALL)):
            return False
    # A one-word mode counts by its word's class, but only where the words are also unlike in meaning:
    # "import" (a keyword) and file words are two meanings, "this" and the pronouns may be one.
    # (a mode of several words has ``closed_concept`` as its class: ca / cb, already known)
    sa = ca or (single_class(ta) if sum(v > 0 for v in ta.values()) == 1 else None)
    sb = cb or (single_class(tb) if sum(v > 0 for v in tb.values()) == 1 else None)
    if (sa is not None and sb is not None and sa.name != sb.name
            and word_similarity([ta], [tb]) < MAX_SPLIT_SIMILARITY):
        return False
    return None


def split_classes(agent, modes: list[Mode], active: torch.Tensor) -> list[Mode]:
    """Every mode whose atoms mix a closed class with words outside it becomes two (``concepts.class_split``),
    repeatedly: a meaning test no train score can make, since both sides may fire at one strength."""
    out, todo, splits = [], list(modes), []
    while todo:
        m = todo.pop()
        parts = atoms(m)
        # Words and token shapes (a number shape beside "del", "created": numbers and creating words that a
        # clustering of contextual vectors put together); contexts are not words.
        words = [a for a in parts if isinstance(a, (TokenIn, TokenRegex))]
        got = class_split([mode_tokens(agent.ws, Mode("", conditions=[a]), active) for a in words]) \
            if len(words) >= 2 and m.is_meaning else None
        if got is None:
            out.append(m)
            continue
        c, inside = got
        keep = {words[i] for i in inside}
        a = build_mode(agent.ws, [x for x in parts if x in keep])
        b = build_mode(agent.ws, [x for x in parts if x not in keep])
        splits.append(f"{m.label}: {c.name} ({a.label}) | the rest ({b.label})")
        todo += [a, b]
    if splits:
        agent.log("class split", splits=splits)
    return out[::-1]


def unshadow(agent, modes: list[Mode], i: int, active: torch.Tensor, full: float,
             extra: list[Mode], where: torch.Tensor | None = None) -> tuple[list[Mode], str] | None:
    """A covering mode that adds nothing because other modes' atoms also fire on most of its activating
    tokens (a shape such as "any punctuation" that a refinement step generalised to) is shadowed, not
    redundant: those atoms stop firing where it fires, or leave their modes (whichever scores better on
    train), when that raises the train score by what a mode must earn (``min_mode_gain``) and the mode
    then earns its gain; ``where``: the tokens the earning rule scores on (``Workspace.score``). Returns the
    new modes and the decision, or None."""
    ws, cfg = agent.ws, agent.cfg
    own = ws.fires(modes[i]) & active
    n_own = int(own.sum())
    if n_own == 0:
        return None
    shadow = {j: [a for a in atoms(o)
                  if int((ws.fires(Mode("", conditions=[a])) & own).sum()) >= 0.5 * n_own]
              for j, o in enumerate(modes) if j != i}
    if not any(shadow.values()):
        return None
    # The broad atom keeps what else it explains (unseen tokens of its shape, on held-out data too) and
    # leaves the shadowed mode its tokens: "any punctuation, but not ':' or ','".
    own_tokens = tuple(dict.fromkeys(t for a in atoms(modes[i]) if isinstance(a, TokenIn) for t in a.tokens))
    others = [a for a in atoms(modes[i]) if not isinstance(a, TokenIn)]
    excluded = ([Not(TokenIn(own_tokens))] if own_tokens else []) + [Not(a) for a in others]
    gone = [a.describe() for j in shadow for a in shadow[j]]
    need = cfg.min_mode_gain  # the change must buy what a mode must (a second reading of one meaning buys nothing)
    best = None
    for how in ("removed", "exclude it"):  # whichever the train data prefer; on a tie the simpler
        new = []
        for j, o in enumerate(modes):
            drop = set(shadow.get(j, []))
            if not drop:
                new.append(o)
                continue
            rest = [a if a not in drop else AllOf((a, *excluded)) for a in atoms(o)] if how == "exclude it" \
                else [a for a in atoms(o) if a not in drop]
            if rest:
                new.append(build_mode(ws, rest))
        k = next(n for n, o in enumerate(new) if o is modes[i])
        score = ws.score(new + extra, where)
        gain = score - ws.score(new[:k] + new[k + 1 :] + extra, where)
        if score - full >= need and gain >= cfg.min_mode_gain and (best is None or score > best[0] + 1e-4):
            best = (score, gain, how, new)
    if best is None:
        return None
    score, gain, how, new = best
    return new, (f"{modes[i].label}: shadowed by {', '.join(gone)} → those atoms {how}, "
                 f"gain {gain:+.3f}, train {score:.3f}")
