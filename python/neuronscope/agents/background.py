"""The background term of an explanation: diffuse low-level firing that no meaning names.

Not a mode (``Mode.kind == "background"``, not counted in "Number"): each train token no meaning holds, at its
own mean train activation — the token look-up table of what is left — joined to the atoms the earning rule
sent to the background (``OfflineNeuronScope.earn``).
"""

from __future__ import annotations

from ..explanations.model import Mode, TokenIn
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
