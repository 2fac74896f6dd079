"""Simulators: (explanation, tokens) → predicted activation per token.

- ``exec`` runs the explanation's conditions: a mode predicts its ``strength`` where any of its
  conditions holds and 0 elsewhere — or, graded, each condition's own strength (the largest where
  several hold); the explanation predicts, per token, the strongest firing mode, plus the context term's
  shifts (a mode of kind ``context``: each condition that holds adds its strength).
  Offline, exact and fast (vocabulary-mask gathers).
- ``embed`` compares each mode's description with every token in context using the offline
  all-MiniLM-L6-v2 model (cosine of the mean-pooled description embedding with the token's contextual
  embedding), then calibrates each mode to the neuron's activation scale with a least-squares line fitted
  on the train split (OpenAI calibrates its simulator the same way on a calibration split).
- ``llm`` (OpenAI-style all-at-once expected value over 0–10, ``llm_simulate.py``); anything with a
  ``name`` and a ``simulate`` method of the :class:`Simulator` shape plugs in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..embedding import embed_texts, minilm
from ..errors import ConfigError, ExplanationError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Explanation
from ..explanations.vocab import Vocab
from .evidence import WindowBatch
from .similar import fill_unlisted


@dataclass
class Simulation:
    """Predicted activations of one explanation over the scored tokens of a WindowBatch."""

    whole: torch.Tensor
    """(T,) float32: the explanation's prediction."""
    modes: torch.Tensor
    """(n_modes, T) float32: each mode's own prediction ((0, T) for a simulator that only predicts the whole)."""


class Simulator(Protocol):
    name: str

    def simulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                 calibration: WindowBatch | None = None) -> list[Simulation]:
        """One Simulation per explanation over ``batch``; ``calibration`` (train windows) may be used to fit scales."""
        ...


def combine_modes(preds: torch.Tensor) -> torch.Tensor:
    """(n_modes, T) → (T,): per token the mode prediction of largest magnitude, the positive one where a
    positive and a negative tie (0 where all are 0)."""
    if preds.shape[0] == 0:
        return torch.zeros(preds.shape[1], dtype=torch.float32, device=preds.device)
    if preds.shape[0] == 1:
        return preds[0]
    # Two reductions instead of abs → argmax → gather: a column argmax over a (n, T) tensor is the offline
    # loop's costliest step (it scores thousands of proposals per neuron; 4.8 of 52 s on 12 MiniLM neurons).
    hi, lo = preds.amax(0), preds.amin(0)
    return torch.where(-lo > hi, lo, hi)


def explanation_prediction(modes: Sequence, preds: torch.Tensor) -> torch.Tensor:
    """(n_modes,) modes, (n_modes, T) their predictions → (T,): the strongest of the competing modes
    (:func:`combine_modes`) plus the additive ones (the context term, ``Mode.additive``)."""
    add = [k for k, m in enumerate(modes) if m.additive]
    if not add:
        return combine_modes(preds)
    rest = [k for k in range(len(modes)) if k not in add]
    return combine_modes(preds[rest]) + preds[add].sum(0)


class ExecSimulator:
    """Runs the conditions (see the module docstring)."""

    name = "exec"

    def __init__(self, vocab: Vocab, evaluator: ConditionEvaluator | None = None) -> None:
        self.evaluator = evaluator or ConditionEvaluator(vocab)

    def mode_masks(self, explanation: Explanation, batch: WindowBatch) -> torch.Tensor:
        """(n_modes, T) bool: where each mode fires on the scored tokens."""
        if not explanation.executable:
            raise ExplanationError(
                f"explanation of neuron {explanation.layer}/{explanation.index} has no conditions; "
                "the exec simulator needs conditions (use the embed or llm simulator for free text)")
        rows = [self.evaluator.evaluate_mode(m, batch.ids, batch.seg)[batch.scored] for m in explanation.modes]
        return torch.stack(rows) if rows else torch.zeros((0, batch.n_tokens), dtype=torch.bool)

    def simulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                 calibration: WindowBatch | None = None) -> list[Simulation]:
        out = []
        for e in explanations:
            if not e.executable:
                self.mode_masks(e, batch)  # raises the error that names the explanation
            preds = torch.zeros((len(e.modes), batch.n_tokens), dtype=torch.float32)
            for k, m in enumerate(e.modes):
                if not m.conditions:
                    continue
                if m.condition_strengths is None and not m.additive:  # uniform strength: one mask
                    fires = self.evaluator.evaluate_mode(m, batch.ids, batch.seg)[batch.scored]
                    preds[k] = fires.to(torch.float32) * float(m.strength)
                    continue
                # Graded: each condition predicts its own strength; where several fire, the largest magnitude
                # (the context term: the sum of the shifts that hold).
                masks = self.evaluator.evaluate_many(m.conditions, batch.ids, batch.seg)[:, batch.scored]
                levels = torch.tensor(m.condition_strengths, dtype=torch.float32)
                rows = masks.to(torch.float32) * levels[:, None]
                preds[k] = rows.sum(0) if m.additive else combine_modes(rows)
            fill_unlisted(e, preds, batch.ids[batch.scored], self.evaluator.vocab)
            out.append(Simulation(whole=explanation_prediction(e.modes, preds), modes=preds))
        return out


class EmbedSimulator:
    """Description-vs-token-in-context similarity with all-MiniLM-L6-v2 (see the module docstring)."""

    name = "embed"

    def __init__(self, vocab: Vocab, batch_size: int = 64, device: str = "cpu") -> None:
        self.vocab = vocab
        self.batch_size = batch_size
        self.device = device
        self._cache: dict[int, torch.Tensor] = {}

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, 384) L2-normalised sentence embeddings (see :func:`embed_texts`)."""
        return embed_texts(texts, batch_size=self.batch_size, device=self.device)

    @torch.inference_mode()
    def token_embeddings(self, batch: WindowBatch) -> torch.Tensor:
        """(T, 384) L2-normalised contextual embedding of every scored token (zeros for whitespace-only pieces).

        Each window (with its left context) is decoded to text; a subject token's vector is the mean of
        the MiniLM tokens overlapping its characters.
        """
        key = id(batch)
        if key in self._cache:
            return self._cache[key]
        tok, model = minilm()
        model = model.to(self.device)
        ids_all, seg_all, scored_all = batch.ids.cpu().numpy(), batch.seg.cpu().numpy(), batch.scored.cpu().numpy()
        bounds = np.flatnonzero(np.diff(seg_all)) + 1
        segs = np.split(np.arange(len(ids_all)), bounds) if len(ids_all) else []
        texts, spans, keep = [], [], []
        for rows in segs:
            pieces = [self.vocab.pieces[i] for i in ids_all[rows]]
            ends = np.cumsum([len(p) for p in pieces])
            texts.append("".join(pieces))
            spans.append(np.stack([ends - [len(p) for p in pieces], ends], 1) if pieces else np.zeros((0, 2), int))
            keep.append(scored_all[rows])
        vecs = []
        for a in range(0, len(texts), self.batch_size):
            enc = tok(texts[a : a + self.batch_size], padding=True, truncation=True, max_length=512,
                      return_offsets_mapping=True, return_tensors="pt")
            offsets = enc.pop("offset_mapping").numpy()
            h = model(**enc.to(self.device)).last_hidden_state.cpu()
            for j in range(len(offsets)):
                sp = spans[a + j]
                off = offsets[j]
                real = (off[:, 1] > off[:, 0])
                # overlap[t, u]: subject token t and MiniLM token u share characters.
                overlap = ((sp[:, None, 0] < off[None, :, 1]) & (off[None, :, 0] < sp[:, None, 1]) & real[None, :])
                w = torch.from_numpy(overlap.astype(np.float32))
                v = (w @ h[j]) / w.sum(1, keepdim=True).clamp(min=1)
                vecs.append(v[torch.from_numpy(keep[a + j])])
        emb = torch.nn.functional.normalize(torch.cat(vecs), dim=-1) if vecs else torch.zeros((0, 384))
        self._cache = {key: emb}
        return emb

    def _mode_texts(self, e: Explanation) -> list[str]:
        if e.modes:
            return [m.description or m.label for m in e.modes]
        return [e.text]

    def similarities(self, explanations: Sequence[Explanation], batch: WindowBatch) -> list[torch.Tensor]:
        """Per explanation, (n_modes, T) cosine similarity of each mode description with each scored token."""
        texts = [t for e in explanations for t in self._mode_texts(e)]
        desc = self.embed_texts(texts)
        tok = self.token_embeddings(batch)
        sims = desc @ tok.T
        out, a = [], 0
        for e in explanations:
            n = len(self._mode_texts(e))
            out.append(sims[a : a + n])
            a += n
        return out

    def simulate(self, explanations: Sequence[Explanation], batch: WindowBatch,
                 calibration: WindowBatch | None = None) -> list[Simulation]:
        sims = self.similarities(explanations, batch)
        cal = self.similarities(explanations, calibration) if calibration is not None and calibration.n_tokens else None
        out = []
        for i, e in enumerate(explanations):
            s = sims[i].to(torch.float64)
            if cal is not None:
                x, y = cal[i].to(torch.float64), calibration.acts.to(torch.float64)
                xm, ym = x.mean(1, keepdim=True), y.mean()
                var = ((x - xm) ** 2).sum(1)
                slope = torch.where(var > 0, ((x - xm) * (y - ym)).sum(1) / var.clamp(min=1e-300), 0.0)
                preds = slope[:, None] * (s - xm) + ym
            else:
                strength = torch.tensor([m.strength for m in e.modes] or [1.0], dtype=torch.float64)
                preds = s.clamp(min=0) * strength[:, None]
            preds = preds.to(torch.float32)
            out.append(Simulation(whole=preds.max(0).values if preds.shape[0] else preds.sum(0), modes=preds))
        return out


def make_simulator(name: str, vocab: Vocab, evaluator: ConditionEvaluator | None = None) -> Simulator:
    """``exec`` or ``embed`` (the LLM simulator is created by the agent layer with its client)."""
    if name == "exec":
        return ExecSimulator(vocab, evaluator)
    if name == "embed":
        return EmbedSimulator(vocab)
    raise ConfigError(f"simulator must be exec or embed, got {name!r}")
