"""Evidence about a neuron: windows of tokens with true activations, split into train and held-out.

The held-out mix (what every score in neuronscope is computed on), for each neuron:

- the odd-ranked top exemplars (ranks 1, 3, 5, ...; the even ranks are train) — interleaved so that
  both halves span the whole top range, as OpenAI's explainer splits its top records;
- the odd-indexed quantile-stratified samples of every stratum (the even ones are train), so the
  scorer sees weak and negative activations as well as the peak;
- random windows, as many as the held-out top windows (a 1:1 top:random mix like OpenAI's, though not
  OpenAI's own validation split: that is ``top[2::4]`` + ``random[1::3]``), drawn uniformly
  over the mined tokens with a seed derived from (seed, layer, neuron); the train split gets its own
  random windows from another stream.

Each window carries up to :data:`MAX_OFFSET` tokens of left context from its document (no
activations), so conditions that look back are evaluated exactly as on the full corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import StoreError
from ..explanations.model import MAX_OFFSET
from ..explanations.vocab import Vocab

KINDS = ("top", "quantile", "random", "probe", "bottom", "survey")


@dataclass
class Window:
    """A run of tokens of one document with the neuron's true activation on each."""

    ids: np.ndarray
    """(L,) int64 vocabulary ids."""
    acts: np.ndarray
    """(L,) float32 true activations."""
    kind: str
    """One of KINDS: why the window was picked."""
    focus: int = -1
    """Index in the window of the token it was picked for (-1: none, e.g. random windows)."""
    start: int = -1
    """Global token position of ``ids[0]`` (-1 when unknown, e.g. imported records)."""
    left: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """(P,) int64 ids of the tokens before the window in the same document (context only)."""

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self.acts = np.asarray(self.acts, dtype=np.float32)
        self.left = np.asarray(self.left, dtype=np.int64)
        if self.ids.shape != self.acts.shape or self.ids.ndim != 1:
            raise StoreError(f"window ids {self.ids.shape} and acts {self.acts.shape} must be equal (L,) shapes")
        if self.kind not in KINDS:
            raise StoreError(f"window kind must be one of {KINDS}, got {self.kind!r}")


@dataclass
class NeuronEvidence:
    """Everything an explainer or scorer may look at for one neuron."""

    layer: int
    index: int
    vocab: Vocab
    train: list[Window]
    heldout: list[Window]
    stats: dict[str, float] = field(default_factory=dict)
    """count, mean, std, min, max, frac_positive and quantiles ``q0.5`` ... when known."""
    source: str = ""
    features: dict[int, np.ndarray] = field(default_factory=dict)
    """Global position → the feature layer's whole activation vector (N,) there, for the neuron's strongest
    tokens (kept by ``store_evidence(feature_frac=...)``, from the same forward pass for a mined store; used
    to cluster modes)."""

    @property
    def max_activation(self) -> float:
        m = self.stats.get("max")
        if m is not None and np.isfinite(m):
            return float(m)
        vals = [float(w.acts.max()) for w in self.train + self.heldout if w.acts.size]
        return max(vals) if vals else 0.0

    def windows(self, split: str) -> list[Window]:
        """``train``, ``heldout`` or ``all`` windows."""
        if split == "train":
            return self.train
        if split == "heldout":
            return self.heldout
        if split == "all":
            return self.train + self.heldout
        raise ValueError(f"split must be train, heldout or all, got {split!r}")


@dataclass
class WindowBatch:
    """Windows laid end to end as one token stream for condition evaluation and simulation.

    ``ids``/``seg`` cover left contexts and windows; ``scored`` marks the window tokens (where the
    true activation is known). Every per-token output of a simulator is over the scored tokens only.
    """

    ids: torch.Tensor  # (T_all,) int64
    seg: torch.Tensor  # (T_all,) int64, one segment per window
    scored: torch.Tensor  # (T_all,) bool
    acts: torch.Tensor  # (T,) float32, true activations of the scored tokens
    window: torch.Tensor  # (T,) int64, window of each scored token
    kind: list[str]  # per window
    focus: torch.Tensor  # (T,) bool, the tokens the windows were picked for
    windows: list[Window]

    @classmethod
    def build(cls, windows: Sequence[Window], device: torch.device | str = "cpu") -> WindowBatch:
        ids, seg, scored, acts, win, focus = [], [], [], [], [], []
        for i, w in enumerate(windows):
            left = w.left[-MAX_OFFSET:] if w.left.size else w.left
            n = left.size + w.ids.size
            ids.append(np.concatenate([left, w.ids]))
            seg.append(np.full(n, i, dtype=np.int64))
            sc = np.zeros(n, dtype=bool)
            sc[left.size:] = True
            scored.append(sc)
            acts.append(w.acts)
            win.append(np.full(w.ids.size, i, dtype=np.int64))
            f = np.zeros(w.ids.size, dtype=bool)
            if 0 <= w.focus < w.ids.size:
                f[w.focus] = True
            focus.append(f)

        def cat(parts: list[np.ndarray], dtype: np.dtype) -> torch.Tensor:
            arr = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
            return torch.from_numpy(arr.astype(dtype, copy=False)).to(device)

        return cls(ids=cat(ids, np.int64), seg=cat(seg, np.int64), scored=cat(scored, np.bool_),
                   acts=cat(acts, np.float32), window=cat(win, np.int64), kind=[w.kind for w in windows],
                   focus=cat(focus, np.bool_), windows=list(windows))

    @property
    def n_tokens(self) -> int:
        return int(self.acts.shape[0])

    def kind_mask(self, kind: str) -> torch.Tensor:
        """(T,) bool: scored tokens of windows of this kind."""
        per_window = torch.tensor([k == kind for k in self.kind], dtype=torch.bool, device=self.acts.device)
        return per_window[self.window] if self.n_tokens else per_window[:0]


def _interleave(n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    return idx[idx % 2 == 0], idx[idx % 2 == 1]


def _mix(seed: int, layer: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, layer, index, stream])


def covered_positions(store) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` int64 arrays: the global token ranges the store's mining covered (its sequences)."""
    starts, lengths = store.sequences
    lo, hi = [], []
    for a, b in store.manifest.get("sequences", [[0, len(starts)]]):
        for s in range(int(a), int(b)):
            lo.append(starts[s])
            hi.append(starts[s] + lengths[s])
    return np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)


def random_positions(store, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) int64 positions drawn uniformly over the mined tokens."""
    lo, hi = covered_positions(store)
    sizes = hi - lo
    total = int(sizes.sum())
    if total == 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    flat = rng.integers(0, total, size=n)
    seq = np.searchsorted(np.cumsum(sizes), flat, side="right")
    return lo[seq] + flat - (np.cumsum(sizes) - sizes)[seq]


@dataclass
class _Plan:
    index: int
    windows: list[tuple[int, int, int, str, int, bool]] = field(default_factory=list)
    """(start, stop, focus_position, kind, stratum, heldout)."""


def corpus_window(tokens, start: int, stop: int, acts: np.ndarray, kind: str, focus: int = -1) -> Window:
    """The window ``[start, stop)`` of a token store with its left context from the same document.

    ``acts``: (stop - start,) the neuron's activations there; ``focus``: index in the window (-1: none).
    """
    d = int(tokens.doc_of(start))
    left_lo = max(int(tokens.doc_offsets[d]), start - MAX_OFFSET)
    return Window(ids=tokens.tokens[start:stop].astype(np.int64), acts=acts, kind=kind, focus=focus, start=start,
                  left=tokens.tokens[left_lo:start].astype(np.int64))


def store_evidence(
    store,
    activations,
    layer: int,
    indices: Sequence[int],
    *,
    context: tuple[int, int] = (12, 4),
    n_random: int | None = None,
    seed: int = 0,
    vocab: Vocab | None = None,
    feature_frac: float | None = None,
) -> list[NeuronEvidence]:
    """Evidence for neurons ``indices`` of ``layer`` of a NeuronStore, activations recomputed in one batched pass.

    activations: the :class:`~neuronscope.activations.ActivationSource` of the store; context: tokens
    before/after each exemplar (clipped to its document); n_random: random windows per split (default:
    the number of held-out top windows); feature_frac: also keep the feature layer's whole activation
    vector at every train token reaching this share of the neuron's train maximum (from the same forward
    pass for a mined store). Returns one NeuronEvidence per index.
    """
    from ..records import QUANTILES

    st = store.stats(layer)
    tok = store.tokens
    vocab = vocab or Vocab.from_tokenizer(store.tokenizer())
    plans = []
    s_count, r = store.config.n_strata, store.config.samples_per_stratum
    for idx in indices:
        store._check(layer, int(idx))
        plan = _Plan(int(idx))
        top = st.topk_positions[idx].numpy()
        top = top[top >= 0]
        tr, ho = _interleave(len(top))
        for sel, held in ((tr, False), (ho, True)):
            for p in top[sel]:
                a, b = tok.window(int(p), *context)
                plan.windows.append((a, b, int(p), "top", -1, held))
        samples = st.sample_positions[idx].numpy().reshape(s_count, r)
        for s in range(s_count):
            row = samples[s][samples[s] >= 0]
            tr, ho = _interleave(len(row))
            for sel, held in ((tr, False), (ho, True)):
                for p in row[sel]:
                    a, b = tok.window(int(p), *context)
                    plan.windows.append((a, b, int(p), "quantile", s, held))
        k_rand = n_random if n_random is not None else max(1, len(top) // 2)
        for stream, held in ((1, False), (2, True)):
            for p in random_positions(store, k_rand, _mix(seed, layer, int(idx), stream)):
                a, b = tok.window(int(p), *context)
                plan.windows.append((a, b, -1, "random", -1, held))
        plans.append(plan)

    # One recomputation for every token of every window of every neuron.
    spans = [(a, b) for plan in plans for a, b, *_ in plan.windows]
    flat = np.unique(np.concatenate([np.arange(a, b) for a, b in spans])) if spans else np.zeros(0, np.int64)
    cols = list(map(int, indices))
    # With features asked for, the layer's whole vectors come from the same pass when the neuron's own layer
    # represents its tokens (a mined store); otherwise (planted) they are fetched from the feature layer.
    same_pass = feature_frac is not None and activations.feature_layer(layer) == layer
    if same_pass:
        cols = list(range(store.n_neurons))
    acts_all = activations.at(layer, cols, flat) if flat.size else None

    out = []
    for j, plan in enumerate(plans):
        idx = plan.index
        train, held = [], []
        for a, b, focus, kind, _stratum, is_held in plan.windows:
            rows = np.searchsorted(flat, np.arange(a, b))
            col = idx if same_pass else j
            w = corpus_window(tok, a, b, acts_all[rows, col], kind, focus - a if focus >= 0 else -1)
            (held if is_held else train).append(w)
        n = int(st.count[idx])
        stats = {"count": float(n), "mean": float(st.mean[idx]),
                 "std": float((float(st.m2[idx]) / n) ** 0.5) if n else float("nan"),
                 "min": float(st.min[idx]), "max": float(st.max[idx]),
                 "frac_positive": float(st.positive[idx]) / n if n else float("nan")}
        for q, v in zip(QUANTILES, store.quantiles(layer, idx, list(QUANTILES)).tolist(), strict=True):
            stats[f"q{q}"] = float(v)
        feats: dict[int, np.ndarray] = {}
        if feature_frac is not None and train:
            top = max(float(w.acts.max()) for w in train if w.acts.size)
            strong = sorted({w.start + int(k) for w in train for k in np.flatnonzero(w.acts >= feature_frac * top)})
            if same_pass:
                feats = {p: acts_all[np.searchsorted(flat, p)].copy() for p in strong}
            elif strong:
                vecs = activations.vectors(activations.feature_layer(layer), strong)
                feats = dict(zip(strong, vecs, strict=True))
        out.append(NeuronEvidence(layer=layer, index=idx, vocab=vocab, train=train, heldout=held, stats=stats,
                                  source=str(store.path), features=feats))
    return out
