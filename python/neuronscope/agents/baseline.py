"""The offline single-pass baselines, each one pass over the train evidence with no refinement.

- ``single-pass`` (:func:`single_pass`): the strongest explainer of its kind — the token look-up table
  with strengths (OpenAI's lookup-table baseline): every token of the train split (top, quantile and
  random windows) predicted at its own mean activation over all its train occurrences (graded, one mode).
- ``top-tokens`` (:func:`top_tokens`): the strawman — the tokens the top train activations fall on, one
  strength, no contrast (kept for comparison with earlier figures).
"""

from __future__ import annotations

import time

import numpy as np

from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Explanation, Mode, TokenIn
from ..scoring.evidence import NeuronEvidence
from .base import AgentConfig, AgentResult
from .render import render_mode
from .workspace import key_piece


def top_tokens(evidence: NeuronEvidence, evaluator: ConditionEvaluator | None = None,
                cfg: AgentConfig | None = None) -> AgentResult:
    """One explanation from the top train exemplars' focus tokens only (see the module docstring)."""
    t0 = time.monotonic()
    cfg = cfg or AgentConfig()
    tops = [w for w in evidence.train if w.kind == "top" and 0 <= w.focus < len(w.ids)]
    counts: dict[str, list[float]] = {}
    for w in tops:
        k = key_piece(evidence.vocab, w.ids[w.focus])
        if k:
            counts.setdefault(k.lower(), []).append(float(w.acts[w.focus]))
    ranked = sorted(counts.items(), key=lambda kv: (-len(kv[1]), -max(kv[1])))[: cfg.single_pass_tokens]
    modes = []
    if ranked:
        acts = [a for _, v in ranked for a in v]
        modes = [render_mode(Mode(label="", conditions=[TokenIn(tuple(k for k, _ in ranked))],
                                  strength=float(np.mean(acts))))]
    e = Explanation(evidence.layer, evidence.index, modes or [Mode("unexplained")], method="top-tokens")
    if not ranked:
        e.text = "no top exemplars"
    transcript = [{"role": "top-tokens", "tokens": [k for k, _ in ranked]}]
    return AgentResult(e, transcript, [], time.monotonic() - t0)


def single_pass(evidence: NeuronEvidence, evaluator: ConditionEvaluator | None = None,
                cfg: AgentConfig | None = None) -> AgentResult:
    """The token look-up table with strengths, from the whole train split in one pass (module docstring)."""
    t0 = time.monotonic()
    cfg = cfg or AgentConfig()
    ids = np.concatenate([w.ids for w in evidence.train]) if evidence.train else np.zeros(0, np.int64)
    acts = np.concatenate([w.acts for w in evidence.train]) if evidence.train else np.zeros(0, np.float32)
    top = float(acts.max()) if acts.size else 0.0
    stats: dict[str, list[float]] = {}
    for i, a in zip(ids.tolist(), acts.tolist(), strict=True):
        k = key_piece(evidence.vocab, i).lower()
        if k:
            stats.setdefault(k, []).append(float(a))
    # Every train token at its own mean activation over all its train occurrences (the token look-up table
    # baseline of OpenAI's "Language models can explain neurons"), the most massive ``lookup_tokens`` kept.
    rows = [(k, float(np.mean(v)), len(v)) for k, v in stats.items()] if top > 0 else []
    rows.sort(key=lambda r: (-abs(r[1]) * r[2], r[0]))
    rows = sorted(rows[: cfg.lookup_tokens], key=lambda r: -r[1])
    modes = []
    if rows:
        mode = Mode(label="", conditions=[TokenIn((k,)) for k, _, _ in rows],
                    strength=float(np.average([m for _, m, _ in rows], weights=[n for _, _, n in rows])),
                    condition_strengths=[m for _, m, _ in rows])
        render_mode(mode)
        mode.label = "token table: " + "/".join(k for k, _, _ in rows[:3]) + ("/..." if len(rows) > 3 else "")
        more = f" and {len(rows) - 12} more" if len(rows) > 12 else ""
        mode.description = "Token look-up table: " + ", ".join(f'"{k}" {m:.2f}' for k, m, _ in rows[:12]) + more
        modes = [mode]
    e = Explanation(evidence.layer, evidence.index, modes or [Mode("unexplained")], method="single-pass")
    if not rows:
        e.text = "no precise activating token"
    transcript = [{"role": "single-pass", "tokens": [f"{k} ({m:.2f}, n={n})" for k, m, n in rows]}]
    return AgentResult(e, transcript, [], time.monotonic() - t0)
