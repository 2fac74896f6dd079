"""What one neuron looks like to a reader or an agent: statistics and exemplars in context (plain data;
``store.neuron_record`` fills it from a NeuronStore)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)


def display_tokens(tokenizer: object, ids: list[int]) -> list[str]:
    """Each token as people read it, so that ``"".join`` gives readable text.

    WordPiece (BERT): a word starts with a space, ``##`` continues it; byte-level BPE and SentencePiece
    tokens go through the tokenizer's own ``convert_tokens_to_string`` (``Ġ``/``▁`` become spaces).
    """
    toks = tokenizer.convert_ids_to_tokens(ids)
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    if type(model).__name__ == "WordPiece":
        prefix = getattr(model, "continuing_subword_prefix", "##")
        return [t[len(prefix):] if t.startswith(prefix) else " " + t for t in toks]
    return [tokenizer.convert_tokens_to_string([t]) for t in toks]


@dataclass
class Exemplar:
    """One token of the corpus with its context window."""

    position: int
    """Global token position (index into the token store)."""
    activation: float
    token_ids: list[int]
    tokens: list[str]
    """Raw token strings of the window."""
    pieces: list[str]
    """Display strings of the window's tokens (``"".join(pieces)`` is readable text)."""
    focus: int
    """Index of the exemplar token inside the window."""
    acts: list[float] | None = None
    """The neuron's activation on every window token (None when not recomputed)."""
    stratum: int | None = None
    """For quantile samples: the histogram stratum the token was drawn from."""

    @property
    def text(self) -> str:
        return "".join(self.pieces).strip()


@dataclass
class NeuronRecord:
    """Statistics and exemplars of one neuron."""

    layer: int
    index: int
    count: int
    mean: float
    std: float
    min: float
    max: float
    frac_positive: float
    nonfinite: int
    quantiles: dict[float, float]
    hist: np.ndarray  # (B,) int64
    top: list[Exemplar] = field(default_factory=list)
    bottom: list[Exemplar] = field(default_factory=list)
    samples: list[Exemplar] = field(default_factory=list)
