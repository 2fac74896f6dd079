"""Backward elimination of the context atoms of a finished explanation, on train data only.

The exec prediction is, per token, the strongest firing atom of any mode. So one broad atom with a high
mean — "two tokens after l", kept because it is precise inside the top windows — overrides the token's own
level and the background wherever it fires: on a real MiniLM neuron (2/737, dash rules) such atoms held
NeuronScope at 0.74 train score where the token look-up table scores 0.95 held out. Refinement adds and
merges whole proposals; nothing asked whether each atom, given all the others, still earns its place.

:func:`prune_atoms` asks: it removes, one at a time, the non-token atom (a context, shape, position or
negated atom) whose removal raises the cross-validated train score most, until no removal gains
``min_gain``. Token atoms are not candidates: a token removed from a meaning would go to the background
term at its own mean, which predicts the same (only the grouping would change, and the earning rule
decides that). Meanings left without atoms disappear.

Because the prediction is a magnitude-max over atom rows, removing atom k changes a token's prediction
only where k is its strongest atom (then the runner-up takes over): each step costs one (K, T) Pearson.
"""

from __future__ import annotations

import torch

from ..explanations.model import Condition, Mode, TokenIn
from ..scoring.corr import pearson_ref
from .workspace import Workspace, atoms, build_mode


def _top2(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, T) → per token the strongest row's index, its value and the runner-up's value (by magnitude)."""
    if rows.shape[0] == 1:
        z = torch.zeros_like(rows[0])
        return torch.zeros(rows.shape[1], dtype=torch.long), rows[0], z
    mag = rows.abs()
    top = mag.topk(2, dim=0).indices  # (2, T)
    return top[0], rows.gather(0, top[:1])[0], rows.gather(0, top[1:2])[0]


def prune_atoms(ws: Workspace, modes: list[Mode], background: Mode | None, *, min_gain: float = 1e-3,
                max_steps: int = 40) -> tuple[list[Mode], Mode | None, list[str]]:
    """(meanings, background) → the same with the context atoms that cost train score removed, and a log.

    A lone meaning keeps at least one atom. At most ``max_steps`` removals, each gaining ``min_gain``."""
    parts = [atoms(m) for m in modes]
    flat: list[tuple[int, Condition]] = [(i, a) for i, p in enumerate(parts) for a in p]
    bg = list(background.conditions) if background is not None else []
    if not flat:
        return modes, background, []
    rows = ws.atom_rows_cv([a for _, a in flat] + bg)  # (A + B, T)
    y = ws.batch.acts
    alive = torch.ones(rows.shape[0], dtype=torch.bool)
    cand = [k for k, (_, a) in enumerate(flat) if not isinstance(a, TokenIn)]
    log: list[str] = []
    for _ in range(max_steps):
        idx = torch.nonzero(alive).squeeze(1)
        arg, first, second = _top2(rows[idx])
        owner = idx[arg]
        best = float(pearson_ref(first[None], y)[0])
        live = [k for k in cand if bool(alive[k])]
        if not live or int(alive[: len(flat)].sum()) <= 1:
            break
        preds = torch.stack([torch.where(owner == k, second, first) for k in live])
        sc = pearson_ref(preds, y)
        sc = torch.nan_to_num(sc, nan=-1.0)
        j = int(sc.argmax())
        if float(sc[j]) < best + min_gain:
            break
        k = live[j]
        alive[k] = False
        log.append(f"drop {flat[k][1].describe()} from mode {flat[k][0]} → {float(sc[j]):.3f}")
    if not log:
        return modes, background, log
    kept = [[a for k, (i, a) in enumerate(flat) if i == n and bool(alive[k])] for n in range(len(parts))]
    meanings = [build_mode(ws, p, kind=m.kind) for p, m in zip(kept, modes, strict=True) if p]
    return meanings, background, log
