"""The NeuronScope roles played by an LLM over any OpenAI-compatible server.

Same loop as the offline backend (``offline.py``) and the same train-only decisions, with the LLM as
hypothesis agent, decomposition agent (it writes conditions in the condition language; each is
validated and checked on the train split, and offline candidates fill what it misses), mode explainer
(label + description per mode) and refinement agent (it sees false negatives, false positives, the
score, and the subject model's real activations on the probe texts it wrote last round, and returns
revised modes + new probes). A revision is kept only if the train score rises; two rounds without gain
or the round budget end the loop. Clustering stays in the C++ core. The stage driver and the
:class:`~neuronscope.agents.base.Explainer` wrappers are in ``explain.py`` / ``explainers.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ExplanationError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Condition, Explanation, Mode, condition_from_dict
from ..llm.errors import LLMHTTPError, LLMResponseError
from ..llm.redact import redact, secrets_from_env
from ..prompts import conditions_doc, load_prompt
from ..scoring.batch import score_conditions
from ..scoring.evidence import NeuronEvidence, Window
from .base import AgentConfig, AgentResult
from .feedback import ProbeTextFn
from .llm_roles import (
    ROLES,
    check_components,
    check_hypotheses,
    check_label,
    check_modes,
    check_single_pass,
    natural_language,
)
from .offline import OfflineNeuronScope
from .threads import torch_threads
from .workspace import build_mode, candidates


def format_window(vocab, w: Window, scale: float, min_frac: float = 0.2) -> str:
    """A window as text with activating tokens marked ``[[token:a]]`` (a on a 0-10 scale)."""
    out = []
    for i, a in zip(w.ids.tolist(), w.acts.tolist(), strict=True):
        piece = vocab.pieces[i]
        if scale > 0 and a >= min_frac * scale:
            lead = piece[: len(piece) - len(piece.lstrip())]
            out.append(f"{lead}[[{piece.strip()}:{round(10 * a / scale)}]]")
        else:
            out.append(piece)
    return "".join(out).strip()


def format_windows(vocab, windows: Sequence[Window], scale: float, limit: int = 12) -> str:
    return "\n".join(f"{k + 1}. {format_window(vocab, w, scale)}" for k, w in enumerate(list(windows)[:limit]))


def _parse_conditions(items: Any, where: str, ws=None) -> tuple[list[Condition], list[str]]:
    """The valid conditions among the LLM's ``items`` and an error per invalid one. With the workspace ``ws``
    each is also evaluated on the train evidence once, so one whose regex is too slow there (see
    ``explanations/patterns.py``) is rejected here like a malformed one, instead of failing the neuron."""
    conds, errors = [], []
    for k, item in enumerate(items if isinstance(items, list) else []):
        try:
            cond = condition_from_dict(item, f"{where}[{k}]")
            if ws is not None:
                ws.mask(cond)
            conds.append(cond)
        except ExplanationError as e:
            errors.append(str(e))
    return conds, errors


class LLMNeuronScope(OfflineNeuronScope):
    """The loop with an LLM in the hypothesis, decomposition, explainer and refinement roles."""

    def __init__(self, evidence: NeuronEvidence, llm, *, probe_texts: ProbeTextFn | None = None, **kw) -> None:
        super().__init__(evidence, **kw)
        self.llm = llm
        self.probe_texts = probe_texts
        self.neuron = f"{evidence.layer}/{evidence.index}"

    async def ask(self, role: str, validator, **values: object) -> Any:
        """The validated answer of ``role`` (see ``llm_roles.py``), or None when the model gave none usable even
        after the corrective retry; either way the transcript records it. Transport errors (the server down,
        a timeout after retries) propagate: the stage driver records the neuron as failed and retries it."""
        return await ask_role(self.llm, role, validator, self.log, neuron=self.neuron, **values)

    def _top_windows(self) -> list[Window]:
        return sorted((w for w in self.ws.windows if w.kind in ("top", "probe")), key=lambda w: -float(w.acts.max()))

    async def arun(self) -> AgentResult:
        t0 = time.monotonic()
        ws, ev = self.ws, self.ws.evidence
        active = self.hypothesis()
        shown = format_windows(ws.vocab, self._top_windows(), ws.max)
        hyps = (await self.ask("hypothesis", check_hypotheses, exemplars=shown) or [])[:6]
        if not hyps:
            self.log("fallback", step="hypothesis", using="the decomposition sees the excerpts only")
        comps = await self.ask("decomposition", check_components, exemplars=shown,
                               hypotheses="\n".join(f"- {h}" for h in hyps) or "(none)",
                               conditions_doc=conditions_doc()) or []
        llm_conds, errors = _parse_conditions([c.get("condition") for c in comps], "components", ws)
        if errors:
            self.log("decomposition errors", errors=errors[:10])
        if not llm_conds:
            self.log("fallback", step="decomposition", using="offline candidate conditions only")
        kept = self._select(llm_conds, active)
        modes = self.cluster_modes(active, kept)
        await self._describe(modes)
        best = ws.score(modes)
        self._record(0, modes, best)
        stale, probes_seen, probed = 0, "(none yet)", set()
        for rnd in range(1, self.cfg.rounds + 1):
            if rnd == 1 and self.survey:  # as offline: the survey joins after the first clustering
                self._join_survey(modes)
                active = ws.batch.acts >= ws.threshold
                best = ws.score(modes)
            fn, fp = self._feedback(modes, active)
            reply = await self.ask(
                "refinement", check_modes, score=best, conditions_doc=conditions_doc(),
                modes="\n".join(f"- {m.label} (strength {m.strength:.2f}): {m.description} "
                                f"{json.dumps([c.to_dict() for c in m.conditions])}" for m in modes) or "(none)",
                false_negatives=fn or "(none)", false_positives=fp or "(none)", probes=probes_seen)
            reply = reply or {"modes": [], "probes": []}
            proposal, errors = [], []
            for k, raw in enumerate(reply["modes"]):
                conds, errs = _parse_conditions(raw.get("conditions"), f"modes[{k}].conditions", ws)
                errors += errs
                if conds:
                    m = build_mode(ws, conds)
                    m.label, m.description = _words(raw.get("label"), m.label, 6), _words(
                        raw.get("description"), m.description, 40, min_words=3)
                    if m.strength > 0:
                        proposal.append(m)
            if errors:
                self.log("refinement errors", round=rnd, errors=errors[:10])
            n_probe = 0
            texts = []
            for t in reply["probes"]:
                t = " ".join(t.split())[:300]
                if t and t.lower() not in probed and len(texts) < 3:
                    texts.append(t)
                    probed.add(t.lower())
            if len(texts) < len([t for t in reply["probes"] if t.strip()][:3]):
                self.log("probes repeated", round=rnd, skipped=len(reply["probes"]) - len(texts))
            if texts and self.probe_texts is not None:
                with torch_threads(None):
                    new = self.probe_texts(texts)
                ws.windows.extend(new)
                n_probe = len(new)
                ws.rebuild()
                ws.threshold = self.cfg.active_frac * ws.max
                active = ws.batch.acts >= ws.threshold
                probes_seen = format_windows(ws.vocab, new, ws.max)
                best = ws.score(modes)  # the current modes on the enlarged evidence
            new_score = ws.score(proposal) if proposal else -1.0
            accepted = new_score > best + 1e-4
            if accepted:
                modes, best = proposal, new_score
            self.log("refinement", round=rnd, proposed=len(proposal), probes=n_probe, accepted=accepted,
                     train_score=best)
            self._record(rnd, modes, best)
            stale = 0 if accepted else stale + 1
            if stale >= 2:
                break
        modes = sorted(modes, key=lambda m: -m.strength)
        e = Explanation(ev.layer, ev.index, modes or [Mode("unexplained")], method="neuronscope",
                        text="; ".join(hyps[:3]) if not modes else "")
        return AgentResult(e, self.transcript, self.rounds, time.monotonic() - t0)

    def _select(self, llm_conds: list[Condition], active: torch.Tensor) -> list[Condition]:
        """LLM conditions first, then offline candidates, each kept if precise and covering new activating tokens."""
        ws = self.ws
        offline = [c for c in candidates(ws, active) if c not in set(llm_conds)]
        cands = llm_conds + offline
        if not cands:
            return []
        sc = score_conditions(ws.ev, cands, ws.batch, positives=active)
        precise = (sc.focus_hits > 0) & (sc.mean_act >= self.cfg.min_precision * ws.threshold) & (sc.r > 0)
        n_llm = len(llm_conds)
        order = [i for i in np.argsort(-sc.r[:n_llm], kind="stable") if precise[i]]
        order += [n_llm + i for i in np.argsort(-sc.r[n_llm:], kind="stable") if precise[n_llm + i]]
        covered = torch.zeros_like(active)
        kept = []
        for i in order:
            m = ws.mask(cands[i])
            if bool((m & active & ~covered).any()):
                kept.append(cands[i])
                covered |= m & active
        self.log("decomposition", llm_conditions=n_llm, llm_kept=sum(1 for c in kept if c in set(llm_conds)),
                 kept=len(kept), covered=f"{int(covered.sum())}/{int(active.sum())}")
        return kept

    async def _describe(self, modes: list[Mode]) -> None:
        ws = self.ws

        async def one(k: int, m: Mode) -> None:
            fires = ws.fires(m)
            wins = sorted({int(w) for w in ws.batch.window[fires].tolist()},
                          key=lambda w: -float(ws.batch.windows[w].acts.max()))[:8]
            reply = await self.ask("explainer", check_label, mode=k + 1,
                                   conditions="\n".join(c.describe() for c in m.conditions),
                                   exemplars=format_windows(ws.vocab, [ws.batch.windows[w] for w in wins], ws.max))
            if reply is None:
                self.log("fallback", step="explainer", mode=k + 1, using="the offline label and description")
            else:
                m.label, m.description = reply["label"], reply["description"]

        await asyncio.gather(*(one(k, m) for k, m in enumerate(modes)))

    def _feedback(self, modes: list[Mode], active: torch.Tensor) -> tuple[str, str]:
        ws = self.ws
        fired = torch.zeros_like(active)
        for m in modes:
            fired |= ws.fires(m)
        y = ws.batch.acts
        fn_idx = torch.nonzero(active & ~fired).squeeze(1)
        fn_idx = fn_idx[torch.argsort(-y[fn_idx])][:5]
        fp_idx = torch.nonzero(fired & (y < 0.1 * max(ws.max, 1e-9))).squeeze(1)[:5]

        def show(idx: torch.Tensor) -> str:
            lines = []
            for t in idx.tolist():
                w = ws.batch.windows[int(ws.batch.window[t])]
                lines.append(f"- {format_window(ws.vocab, w, ws.max)}  (token: "
                             f"{ws.vocab.pieces[int(ws.batch.ids[ws.batch.scored][t])].strip()!r}, "
                             f"activation {float(y[t]):.2f})")
            return "\n".join(lines)

        return show(fn_idx), show(fp_idx)


async def llm_single_pass(evidence: NeuronEvidence, llm, evaluator: ConditionEvaluator,
                          cfg: AgentConfig) -> AgentResult:
    """One LLM call on the top train exemplars: one mode, no contrast, no refinement (OpenAI's explainer style)."""
    t0 = time.monotonic()
    agent = OfflineNeuronScope(evidence, evaluator=evaluator, cfg=cfg)
    ws = agent.ws
    tops = sorted((w for w in evidence.train if w.kind == "top"), key=lambda w: -float(w.acts.max()))
    transcript: list[dict] = []
    reply = await ask_role(llm, "single_pass", check_single_pass, lambda role, **kw: transcript.append(
        {"role": role, **kw}), neuron=f"{evidence.layer}/{evidence.index}", conditions_doc=conditions_doc(),
        exemplars=format_windows(evidence.vocab, tops, ws.max, limit=20))
    if reply is None:  # nothing usable: an explanation that explains nothing (scored as such), not a crash
        transcript.append({"role": "fallback", "step": "single_pass", "using": "no explanation"})
        reply = {"description": "", "conditions": []}
    conds, errors = _parse_conditions(reply["conditions"], "conditions", ws)
    if errors:
        transcript.append({"role": "single_pass errors", "errors": errors[:10]})
    mode = build_mode(ws, conds) if conds else Mode("unexplained")
    mode.description = reply["description"]
    mode.label = mode.label or "single pass"
    e = Explanation(evidence.layer, evidence.index, [mode], method="single-pass", text=mode.description)
    return AgentResult(e, transcript, [], time.monotonic() - t0)


CONTEXT_OVERFLOW = re.compile(r"context (?:size|length|window)|maximum context|too many tokens|"
                              r"exceeds? the (?:available )?context|prompt is too long", re.I)
"""What llama.cpp ("exceeds the available context size"), vLLM ("maximum context length") and OpenAI
("maximum context length", "context_length_exceeded") say when a request does not fit the context."""


async def ask_role(llm, role: str, validator, log, **values: object) -> Any:
    """One role's request with its schema and budget (``llm_roles.ROLES``); the validated value, or None when
    the model's reply stays unusable after the client's corrective retry. ``log(role_tag, **fields)`` records
    the exchange or the failure (with the model's last reply)."""
    spec = ROLES[role]
    p = load_prompt(spec.prompt)
    config = getattr(llm, "config", None)
    cap = getattr(config, "max_tokens", None)  # the run's budget caps every role's
    # The client redacts what the server says; this is the second line for any other ``llm`` object.
    secrets = secrets_from_env([getattr(config, "api_key_env", None)])
    budget = min(spec.max_tokens, cap) if isinstance(cap, int) else spec.max_tokens
    try:
        res = await llm.chat_json(p.messages(**values), validator=validator, json_schema=spec.schema,
                                  schema_hint=spec.hint, max_tokens=budget)
    except LLMResponseError as e:
        log(p.tag, error=redact(str(e), secrets)[:500], reply=redact(e.raw_text or "", secrets)[:2000],
            finish_reason=e.finish_reason)
        return None
    except LLMHTTPError as e:
        # A prompt (or its corrective retry) longer than the server's context is this role's failure, not the
        # neuron's: the agent falls back as for an unusable reply. (Seen with Qwen2.5-1.5B at 4,096 tokens a
        # slot on SmolLM2 layer 18: 4,684 tokens.) Any other HTTP error is the server's and fails the neuron.
        if e.status not in (400, 413) or not CONTEXT_OVERFLOW.search(e.server_message):
            raise
        log(p.tag, error=redact(str(e), secrets)[:500], reply="", finish_reason="context")
        return None
    log(p.tag, reply=redact(res.text, secrets)[:2000], cached=res.cached, attempts=res.attempts)
    return res.parsed


def _words(text: Any, fallback: str, max_words: int, min_words: int = 1) -> str:
    """``text`` when it is natural language (see ``llm_roles.natural_language``), else ``fallback``."""
    try:
        return natural_language(text, "text", min_words=min_words, max_words=max_words)[:240]
    except ValueError:
        return fallback
