"""NeuronStore: a directory of per-layer neuron statistics plus the token store they refer to.

Layout::

    manifest.json            model, architecture, layers, neurons per layer, mining config, packing,
                             sequences covered, tokens seen, corpus fingerprint, tokenizer, format
    layer_XX.safetensors     the LayerStats tensors of layer XX (see mining/stats.py)
    tokens/                  the token store (tokens.bin, docs.npy, meta.json), or a path to it

The manifest is written last: a directory without one is not a store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file

from .corpus.packing import Packing
from .corpus.tokenstore import TokenStore
from .errors import StoreError
from .io import write_json, write_safetensors
from .mining.spec import MiningConfig
from .mining.stats import LayerStats
from .records import QUANTILES, Exemplar, NeuronRecord, display_tokens


class ActivationSource(Protocol):
    """What the store needs from ``neuronscope.activations`` to show recomputed activations (declared here so
    that the store never imports the recomputation side)."""

    def at(self, layer: int, neurons: Sequence[int] | np.ndarray,
           positions: Sequence[int] | np.ndarray) -> np.ndarray: ...

FORMAT = 1


def layer_file(layer: int) -> str:
    return f"layer_{layer:02d}.safetensors"


def write_stats(path: Path, stats: dict[int, LayerStats]) -> None:
    """Writes each layer's statistics atomically (the manifest is the caller's commit marker)."""
    for layer, st in stats.items():
        write_safetensors(path / layer_file(layer), st.to_tensors(), metadata={"layer": str(layer)})


def read_stats(path: Path, layer: int, cfg: MiningConfig) -> LayerStats:
    file = path / layer_file(layer)
    if not file.exists():
        raise StoreError(f"{path}: missing {file.name}")
    try:
        tensors = load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise StoreError(f"{file}: unreadable safetensors file: {e}") from e
    return LayerStats.from_tensors(tensors, cfg, where=str(file))


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    file = path / "manifest.json"
    if not file.exists():
        raise StoreError(f"{path} is not a NeuronStore (no manifest.json; an unfinished run leaves none)")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StoreError(f"{file}: corrupt manifest: {e}") from e
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{file}: unsupported store format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    write_json(path / "manifest.json", {"format": FORMAT, **manifest})


def quantiles_from_hist(
    hist: np.ndarray, bounds: np.ndarray, qs: np.ndarray
) -> np.ndarray:
    """Quantiles read off a histogram by linear interpolation inside the bin.

    hist: (B,) counts; bounds: (B, 2) lower/upper bound of each bin; qs: (Q,) in [0, 1] → (Q,) float64.
    """
    total = hist.sum()
    if total == 0:
        return np.full(len(qs), np.nan)
    cum = np.cumsum(hist)
    out = np.empty(len(qs))
    for i, q in enumerate(qs):
        target = q * total
        b = int(np.searchsorted(cum, max(target, 1e-12), side="left"))
        b = min(b, len(hist) - 1)
        before = cum[b] - hist[b]
        frac = 0.0 if hist[b] == 0 else (target - before) / hist[b]
        lo, hi = bounds[b]
        out[i] = lo + min(max(frac, 0.0), 1.0) * (hi - lo)
    return out


class NeuronStore:
    """Read access to a finished NeuronStore (see :func:`neuronscope.open_store`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.config = MiningConfig.from_dict(self.manifest["mining"])
        self._stats: dict[int, LayerStats] = {}
        self._tokenizer = None

    def __repr__(self) -> str:
        return (f"NeuronStore({str(self.path)!r}, model={self.model_id!r}, layers={self.layers}, "
                f"neurons={self.n_neurons}, tokens={self.n_tokens_seen})")

    @property
    def model_id(self) -> str:
        return self.manifest["model"]["id"]

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def n_neurons(self) -> int:
        """Neurons per layer."""
        return int(self.manifest["n_neurons"])

    @property
    def k(self) -> int:
        return self.config.k

    @property
    def n_tokens_seen(self) -> int:
        return int(self.manifest["tokens_seen"])

    @property
    def packing(self) -> Packing:
        return Packing(**self.manifest["packing"])

    @cached_property
    def tokens(self) -> TokenStore:
        ts = TokenStore(self.path / self.manifest.get("token_store", "tokens"))
        if ts.fingerprint != self.manifest["corpus_fingerprint"]:
            raise StoreError(f"{self.path}: token store fingerprint differs from the manifest's")
        return ts

    @cached_property
    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, lengths)`` of the packed sequences (computed once; every recomputation reads them)."""
        return self.packing.sequences(self.tokens)

    def stats(self, layer: int) -> LayerStats:
        """All statistics of one layer (loaded once, then cached)."""
        if layer not in self.layers:
            raise StoreError(f"layer {layer} not in this store (layers: {self.layers})")
        if layer not in self._stats:
            self._stats[layer] = read_stats(self.path, layer, self.config)
        return self._stats[layer]

    def _check(self, layer: int, index: int) -> None:
        if not 0 <= index < self.n_neurons:
            raise StoreError(f"neuron index {index} out of range (0..{self.n_neurons - 1})")
        self.stats(layer)

    def quantiles(self, layer: int, index: int, qs: list[float] | np.ndarray) -> np.ndarray:
        """Activation quantiles of one neuron read off its histogram, ``(Q,)``."""
        from .mining.spec import bin_bounds

        self._check(layer, index)
        st = self.stats(layer)
        bounds = bin_bounds(self.config, float(st.min[index]), float(st.max[index]))
        return quantiles_from_hist(st.hist[index].numpy(), bounds, np.asarray(qs, dtype=np.float64))

    def tokenizer(self):
        """The subject's tokenizer, read from the model's files (the model itself is not loaded)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from .models import resolve_model_path

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self.model_id))
        return self._tokenizer

    def neuron(self, layer: int, index: int, *, context: tuple[int, int] = (12, 4),
               activations: ActivationSource | None = None) -> NeuronRecord:
        """One neuron's statistics, top (and bottom) exemplars in context, and quantile samples.

        ``context`` = tokens shown before/after each exemplar (clipped to its document); with an
        ``activations`` source (``neuronscope.activations.activation_source(store)``) the neuron's
        activation on every context token is recomputed too.
        """
        self._check(layer, index)
        return neuron_record(self, layer, index, context=context, activations=activations)

    def summary(self) -> dict:
        """Counts for ``neuronscope info``."""
        m = self.manifest
        return {
            "path": str(self.path),
            "model": m["model"]["id"],
            "architecture": m["architecture"],
            "layers": m["layers"],
            "neurons_per_layer": m["n_neurons"],
            "k": self.config.k,
            "tokens_seen": m["tokens_seen"],
            "corpus_tokens": m.get("corpus_tokens"),
            "corpus_fingerprint": m["corpus_fingerprint"],
            "backend": m.get("backend"),
            "seconds": m.get("seconds"),
        }


def _exemplars(store: NeuronStore, layer: int, index: int, positions: np.ndarray, values: np.ndarray,
               context: tuple[int, int], activations: ActivationSource | None,
               strata: np.ndarray | None = None) -> list[Exemplar]:
    tok = store.tokens
    keep = positions >= 0
    positions, values = positions[keep], values[keep]
    strata = strata[keep] if strata is not None else None
    windows = [tok.window(int(p), *context) for p in positions]
    tokenizer = store.tokenizer()
    acts = None
    if activations is not None and len(positions):
        flat = np.concatenate([np.arange(a, b) for a, b in windows])
        acts_flat = activations.at(layer, [index], flat)[:, 0]
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


def neuron_record(store: NeuronStore, layer: int, index: int, *, context: tuple[int, int],
                  activations: ActivationSource | None) -> NeuronRecord:
    """The :class:`NeuronRecord` of one neuron (exemplar activations recomputed when a source is given)."""
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


def open_store(path: str | Path) -> NeuronStore:
    """Opens a finished NeuronStore directory (raises StoreError if missing or corrupt)."""
    return NeuronStore(path)
