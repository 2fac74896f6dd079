"""What one neuron looks like to a reader or an agent: statistics and exemplars in context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .store import NeuronStore

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


def _exemplars(store: NeuronStore, layer: int, index: int, positions: np.ndarray, values: np.ndarray,
               context: tuple[int, int], activations: bool, strata: np.ndarray | None = None) -> list[Exemplar]:
    tok = store.tokens
    keep = positions >= 0
    positions, values = positions[keep], values[keep]
    strata = strata[keep] if strata is not None else None
    windows = [tok.window(int(p), *context) for p in positions]
    tokenizer = store.tokenizer()
    acts = None
    if activations and len(positions):
        flat = np.concatenate([np.arange(a, b) for a, b in windows])
        acts_flat = store.activations_at(layer, [index], flat)[:, 0]
        splits = np.cumsum([b - a for a, b in windows])[:-1]
        acts = np.split(acts_flat, splits)
    out = []
    for i, (p, v) in enumerate(zip(positions.tolist(), values.tolist(), strict=True)):
        a, b = windows[i]
        ids = tok.tokens[a:b].tolist()
        strs = tokenizer.convert_ids_to_tokens(ids)
        pieces = display_tokens(tokenizer, ids)
        out.append(Exemplar(
            position=p, activation=float(v), token_ids=ids, tokens=list(strs), pieces=pieces, focus=p - a,
            acts=acts[i].tolist() if acts is not None else None,
            stratum=int(strata[i]) if strata is not None else None,
        ))
    return out


def neuron_record(store: NeuronStore, layer: int, index: int, *, context: tuple[int, int], activations: bool) -> NeuronRecord:
    st = store.stats(layer)
    n = int(st.count[index])
    var = float(st.m2[index]) / n if n else float("nan")
    qs = store.quantiles(layer, index, list(QUANTILES))
    s, r = store.config.n_strata, store.config.samples_per_stratum
    sample_pos = st.sample_positions[index].reshape(-1).numpy()
    sample_val = st.sample_values[index].reshape(-1).numpy()
    sample_strata = np.repeat(np.arange(s), r)
    return NeuronRecord(
        layer=layer,
        index=index,
        count=n,
        mean=float(st.mean[index]),
        std=var ** 0.5,
        min=float(st.min[index]),
        max=float(st.max[index]),
        frac_positive=float(st.positive[index]) / n if n else float("nan"),
        nonfinite=int(st.nonfinite[index]),
        quantiles=dict(zip(QUANTILES, qs.tolist(), strict=True)),
        hist=st.hist[index].numpy(),
        top=_exemplars(store, layer, index, st.topk_positions[index].numpy(), st.topk_values[index].numpy(),
                       context, activations),
        bottom=_exemplars(store, layer, index, st.bottomk_positions[index].numpy(),
                          st.bottomk_values[index].numpy(), context, activations),
        samples=_exemplars(store, layer, index, sample_pos, sample_val, context, activations, sample_strata),
    )
