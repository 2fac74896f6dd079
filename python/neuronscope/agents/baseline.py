"""The offline single-pass baseline (OpenAI's explainer style, without an LLM)."""

from __future__ import annotations

import time

import numpy as np

from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Explanation, Mode, TokenIn
from ..scoring.evidence import NeuronEvidence
from .base import AgentConfig, AgentResult
from .render import render_mode
from .workspace import key_piece


def single_pass(evidence: NeuronEvidence, evaluator: ConditionEvaluator | None = None,
                cfg: AgentConfig | None = None) -> AgentResult:
    """One explanation from the top train exemplars only (see the module docstring)."""
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
    e = Explanation(evidence.layer, evidence.index, modes or [Mode("unexplained")], method="single-pass")
    if not ranked:
        e.text = "no top exemplars"
    transcript = [{"role": "single-pass", "tokens": [k for k, _ in ranked]}]
    return AgentResult(e, transcript, [], time.monotonic() - t0)
