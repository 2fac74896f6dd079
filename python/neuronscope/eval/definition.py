"""What a planted neuron is: its true modes, and the one function that evaluates them on a token stream.

A true mode is either a list of conditions of the explanation grammar (fires where one holds, at its
``strength``) or a **feature** the grammar cannot express exactly, given as JSON data:

===============  ==========================================================================================
``words``        every piece of a whole word in ``words`` (lower-cased; a word is a token plus the sub-word
                 pieces that continue it), optionally only in a ``context``
``number``       every piece of a whole number, graded by its value ``v``: level 0.25 + 0.75 · min(1,
                 log10(1 + v) / 4) (0 → 0.25, 9 → 0.44, 99 → 0.63, 999 → 0.81, ≥ 9999 → 1)
``phrase``       the last token of a multi-word phrase (``phrases``: lists of words, consecutive in a document)
``doc_start``    the first ``first`` tokens of a document, level 1 at position 0 falling linearly to 0.5
===============  ==========================================================================================

Contexts of ``words``: ``{"kind": "parens", "inside": bool}`` (inside an unclosed ``(`` of the same
document, or not) and ``{"kind": "after", "words": [..], "window": w, "present": bool}`` (one of those
words among the previous ``w`` tokens of the document, or not). A mode's value at a token is its
strength × the feature's level there (0 where it does not fire).

:func:`mode_values` is the definition: the planted store's corpus activations (``planted``, which adds
dropout and noise) and the activation source's probe texts (``activations.PlantedActivations.on_texts``,
noise-free: :func:`definition`) both go through it, so the two can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..errors import ConfigError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Condition, condition_from_dict
from ..explanations.vocab import Vocab

FEATURES = ("words", "number", "phrase", "doc_start")
CONTEXTS = ("parens", "after")


@dataclass
class TrueMode:
    label: str
    conditions: list[Condition]
    strength: float
    feature: dict | None = None
    """A feature outside the condition grammar (see the module docstring); then ``conditions`` is empty."""

    def __post_init__(self) -> None:
        if self.feature is not None:
            check_feature(self.feature, f"mode {self.label!r}")
            if self.conditions:
                raise ConfigError(f"mode {self.label!r}: a feature mode has no conditions")

    def to_dict(self) -> dict:
        d = {"label": self.label, "conditions": [c.to_dict() for c in self.conditions], "strength": self.strength}
        if self.feature is not None:
            d["feature"] = self.feature
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrueMode:
        return cls(d["label"], [condition_from_dict(c) for c in d["conditions"]], float(d["strength"]),
                   d.get("feature"))


@dataclass
class PlantedNeuron:
    kind: str
    """The family: mono, 2-mode, 3-mode, unequal, context, duplicate, weak (inside the condition grammar);
    category, graded, phrase, position, overlap, context-pair (beyond it; ``eval.families``)."""
    modes: list[TrueMode]
    groups: list[list[int]]
    """Which true modes count as one (near-duplicates should be merged): lists of mode indices."""
    keep: float = 0.9

    def to_dict(self) -> dict:
        return {"kind": self.kind, "modes": [m.to_dict() for m in self.modes], "groups": self.groups, "keep": self.keep}

    @classmethod
    def from_dict(cls, d: dict) -> PlantedNeuron:
        return cls(d["kind"], [TrueMode.from_dict(m) for m in d["modes"]], d["groups"], float(d.get("keep", 0.9)))


def _words(value, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(w, str) and w for w in value):
        raise ConfigError(f"{where} must be a non-empty list of words")
    return value


def check_feature(f: dict, where: str) -> None:
    """Validates a feature's JSON form; the message names the bad field."""
    if not isinstance(f, dict) or f.get("kind") not in FEATURES:
        raise ConfigError(f"{where}: feature.kind must be one of {', '.join(FEATURES)}")
    kind = f["kind"]
    if kind == "words":
        _words(f.get("words"), f"{where}: feature.words")
        ctx = f.get("context")
        if ctx is not None:
            if not isinstance(ctx, dict) or ctx.get("kind") not in CONTEXTS:
                raise ConfigError(f"{where}: feature.context.kind must be one of {', '.join(CONTEXTS)}")
            if ctx["kind"] == "after":
                _words(ctx.get("words"), f"{where}: feature.context.words")
                if not isinstance(ctx.get("window"), int) or ctx["window"] < 1:
                    raise ConfigError(f"{where}: feature.context.window must be a positive integer")
    elif kind == "phrase":
        ph = f.get("phrases")
        if not isinstance(ph, list) or not ph:
            raise ConfigError(f"{where}: feature.phrases must be a non-empty list of phrases")
        for i, p in enumerate(ph):
            _words(p, f"{where}: feature.phrases[{i}]")
    elif kind == "doc_start" and (not isinstance(f.get("first"), int) or f["first"] < 1):
        raise ConfigError(f"{where}: feature.first must be a positive integer")


@dataclass
class TokenStream:
    """A token stream as planted definitions read it: ``ids (T,)`` int64 and ``seg (T,)`` int64 (the document
    of each token, contiguous runs), with the vocabulary that names the ids."""

    ids: np.ndarray
    seg: np.ndarray
    vocab: Vocab
    evaluator: ConditionEvaluator | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self.seg = np.asarray(self.seg, dtype=np.int64)
        if self.ids.ndim != 1 or self.seg.shape != self.ids.shape:
            raise ConfigError(f"ids and seg must both be (T,), got {self.ids.shape} and {self.seg.shape}")
        if self.evaluator is None:
            self.evaluator = ConditionEvaluator(self.vocab)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def new_doc(self) -> np.ndarray:
        """(T,) bool: the token opens a document."""
        out = np.ones(len(self), dtype=bool)
        out[1:] = self.seg[1:] != self.seg[:-1]
        return out

    @cached_property
    def position(self) -> np.ndarray:
        """(T,) int64: the token's position inside its document."""
        idx = np.arange(len(self))
        return idx - np.maximum.accumulate(np.where(self.new_doc, idx, 0))

    @cached_property
    def keys(self) -> np.ndarray:
        """(T,) str: each token's normalised (lower-cased, markers stripped) string."""
        return np.asarray(self.vocab.keys(), dtype=object)[self.ids] if len(self) else np.zeros(0, dtype=object)

    @cached_property
    def word_of(self) -> np.ndarray:
        """(T,) int64: the index of the word each token belongs to. A token continues the previous token's word
        when its piece has no leading space and both are alphanumeric (WordPiece ``##`` pieces, BPE pieces)."""
        pieces = self.vocab.pieces
        p = [pieces[i] for i in self.ids]
        cont = np.zeros(len(self), dtype=bool)
        for t in range(1, len(self)):
            cont[t] = (not self.new_doc[t] and not p[t][:1].isspace() and p[t].strip().isalnum()
                       and p[t - 1].strip().isalnum())
        return np.cumsum(~cont) - 1

    @cached_property
    def words(self) -> list[str]:
        """The text of each word (its pieces' keys joined), in order."""
        out: list[str] = []
        last = -1
        for w, k in zip(self.word_of.tolist(), self.keys.tolist(), strict=True):
            if w != last:
                out.append(k)
                last = w
            else:
                out[-1] += k
        return out

    @cached_property
    def word_text(self) -> np.ndarray:
        """(T,) str: the whole word each token belongs to."""
        return np.asarray(self.words, dtype=object)[self.word_of] if len(self) else np.zeros(0, dtype=object)

    @cached_property
    def paren_depth(self) -> np.ndarray:
        """(T,) int64: unclosed ``(`` of the same document before each token (a stray ``)`` closes nothing)."""
        out = np.zeros(len(self), dtype=np.int64)
        depth = 0
        for t, k in enumerate(self.keys.tolist()):
            if self.new_doc[t]:
                depth = 0
            out[t] = depth
            depth = depth + 1 if k == "(" else max(0, depth - 1) if k == ")" else depth
        return out

    def word_mask(self, words) -> np.ndarray:
        """(T,) bool: tokens whose whole word is one of ``words``."""
        return np.isin(self.word_text, np.asarray(sorted({w.lower() for w in words}), dtype=object))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, seg)`` as torch tensors (what the condition evaluator takes), cached."""
        if "torch" not in self._cache:
            self._cache["torch"] = (torch.from_numpy(self.ids), torch.from_numpy(self.seg))
        return self._cache["torch"]


def number_level(value: int) -> float:
    """The graded level of a number (see the module docstring)."""
    return 0.25 + 0.75 * min(1.0, math.log10(1 + value) / 4)


def _after(stream: TokenStream, words, window: int) -> np.ndarray:
    hit = stream.word_mask(words)
    out = np.zeros(len(stream), dtype=bool)
    for k in range(1, window + 1):
        out[k:] |= hit[:-k] & (stream.seg[k:] == stream.seg[:-k])
    return out


def feature_level(f: dict, stream: TokenStream) -> np.ndarray:
    """(T,) float64 in [0, 1]: the feature's level at each token, 0 where it does not fire."""
    t = len(stream)
    kind = f["kind"]
    if kind == "words":
        m = stream.word_mask(f["words"])
        ctx = f.get("context")
        if ctx is not None:
            if ctx["kind"] == "parens":
                inside = stream.paren_depth > 0
                m &= inside if ctx.get("inside", True) else ~inside
            else:
                near = _after(stream, ctx["words"], ctx["window"])
                m &= near if ctx.get("present", True) else ~near
        return m.astype(np.float64)
    if kind == "number":
        levels = [number_level(int(w)) if w.isascii() and w.isdigit() else 0.0 for w in stream.words]
        return np.asarray(levels, dtype=np.float64)[stream.word_of] if t else np.zeros(0)
    if kind == "phrase":
        out = np.zeros(t, dtype=np.float64)
        if not t:
            return out
        words = np.asarray(stream.words, dtype=object)
        starts = np.flatnonzero(np.r_[True, stream.word_of[1:] != stream.word_of[:-1]])  # first token of each word
        last = np.append(starts[1:], t) - 1  # last token of each word
        wseg = stream.seg[starts]
        for phrase in f["phrases"]:
            n = len(phrase)
            if n > len(words):
                continue
            hit = wseg[n - 1 :] == wseg[: len(words) - n + 1]
            for i, w in enumerate(phrase):
                hit &= words[i : len(words) - n + 1 + i] == w.lower()
            out[last[np.flatnonzero(hit) + n - 1]] = 1.0
        return out
    k = int(f["first"])
    pos = stream.position
    return np.where(pos < k, 1.0 - 0.5 * pos / max(k - 1, 1), 0.0)


def mode_values(neuron: PlantedNeuron, stream: TokenStream) -> np.ndarray:
    """(n_modes, T) float64: each true mode's noise-free value at each token (0 where it does not fire)."""
    rows = []
    for m in neuron.modes:
        if m.feature is not None:
            rows.append(m.strength * feature_level(m.feature, stream))
        else:
            ids, seg = stream.tensors()
            fires = np.zeros(len(stream), dtype=bool)
            for c in m.conditions:
                fires |= stream.evaluator.evaluate(c, ids, seg).numpy()
            rows.append(np.where(fires, m.strength, 0.0))
    return np.stack(rows) if rows else np.zeros((0, len(stream)))


def definition(neuron: PlantedNeuron, stream: TokenStream) -> np.ndarray:
    """(T,) float32: the neuron's noise-free activation, the largest value of the modes that fire (else 0)."""
    v = mode_values(neuron, stream)
    return (v.max(0) if len(v) else np.zeros(len(stream))).astype(np.float32)
