"""The background term of an explanation: diffuse low-level firing that no meaning names.

Not a mode (``Mode.kind == "background"``, not counted in "Number"): each train token no meaning holds, at its
own mean train activation — the token look-up table of what is left — joined to the atoms the earning rule
sent to the background (``OfflineNeuronScope.earn``).
"""

from __future__ import annotations

import numpy as np

from ..explanations.model import Mode, TokenIn
from ..scoring.corr import pearson_ref
from ..scoring.similar import listed_levels, similar_fill
from .base import AgentConfig
from .workspace import Workspace, build_mode, key_piece


def background_term(ws: Workspace, cfg: AgentConfig, modes: list[Mode],
                    earned: Mode | None) -> tuple[Mode | None, dict]:
    """(meanings, what the earning rule sent to the background) → (the background term or None, a log entry).

    At most ``cfg.background_tokens`` tokens, by activation mass (sum of |activation| over the train tokens).
    Kept only if it raises the cross-validated train score over the meanings with ``earned`` alone."""
    used = {t for m in modes for c in m.conditions if isinstance(c, TokenIn) for t in c.tokens}
    ids = ws.batch.ids[ws.batch.scored].tolist()
    y = ws.batch.acts.tolist()
    mass: dict[str, float] = {}
    for i, a in zip(ids, y, strict=True):
        k = key_piece(ws.vocab, i).lower()
        if k and k not in used:
            mass[k] = mass.get(k, 0.0) + abs(a)
    keep = sorted(mass, key=lambda k: -mass[k])[: cfg.background_tokens]
    parts = list(earned.conditions) if earned is not None else []
    parts += [TokenIn((k,)) for k in keep if TokenIn((k,)) not in parts]
    if not parts:
        return None, {"tokens": 0, "kept": False}
    cand = build_mode(ws, parts, kind="background")
    base = ws.score(modes + ([earned] if earned is not None else []))
    with_bg = ws.score([*modes, cand])
    kept = with_bg > base + 1e-4
    return (cand if kept else earned), {"tokens": len(keep), "train_score_without": base,
                                        "train_score_with": with_bg, "kept": kept}


def similar_words(ws: Workspace, cfg: AgentConfig, modes: list[Mode], background: Mode) -> dict:
    """Sets ``background.similar`` to ``cfg.similar_words`` when reading unlisted words by their nearest listed
    words (``scoring/similar.py``) raises the cross-validated train score; returns a log entry.

    Held out, the fill reaches the words train never showed. In train every word is listed, but a word seen in
    one train window only has no cross-validated level (``Workspace.atom_rows_cv``: 0) — the nearest thing to
    an unseen word. There, where nothing else predicts it, the fill from the *other* listed words is compared
    with the 0 it gets without (the words seen once stand in for the unseen ones, as in Good–Turing)."""
    if cfg.similar_words <= 0:
        return {"similar": 0}
    allm = [*modes, background]
    pred = ws.predict_cv(allm)
    b = ws.batch
    keys = np.array([key_piece(ws.vocab, i).lower() for i in b.ids[b.scored].tolist()], dtype=object)
    win = b.window.numpy()
    first: dict[str, int] = {}
    multi: set[str] = set()
    for k, w in zip(keys.tolist(), win.tolist(), strict=True):
        if first.setdefault(k, w) != w:
            multi.add(k)
    once = np.array([bool(k) and k not in multi for k in keys.tolist()])
    todo = once & (pred.numpy() == 0)
    if todo.sum() < 2:
        return {"similar": 0, "singletons": int(todo.sum())}
    table, levels = listed_levels(allm)
    words = sorted(set(keys[todo].tolist()))
    fill = dict(zip(words, similar_fill(table, levels, words, cfg.similar_words, exclude_self=True), strict=True))
    filled = pred.clone()
    at = np.flatnonzero(todo)
    filled[at] = filled.new_tensor([fill[k] for k in keys[at].tolist()])
    without = float(pearson_ref(pred[None], b.acts)[0])
    with_fill = float(pearson_ref(filled[None], b.acts)[0])
    if with_fill > without + cfg.similar_min_gain:
        background.similar = cfg.similar_words
    return {"similar": background.similar, "singletons": int(todo.sum()), "train_score_without": without,
            "train_score_with": with_fill}
