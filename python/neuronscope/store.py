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
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .corpus.packing import Packing
from .corpus.tokenstore import TokenStore
from .errors import StoreError
from .io import write_json, write_safetensors
from .mining.spec import MiningConfig
from .mining.stats import LayerStats

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
        self._subject = None
        self._tokenizer = None
        self._cache: tuple[np.ndarray, dict[int, np.ndarray]] | None = None  # (row of position, {layer: (rows, N)})

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

    def subject(self):
        """The subject model (loaded on first use) for recomputing activations."""
        if self._subject is None:
            from .models import load_subject

            m = self.manifest["model"]
            self._subject = load_subject(m["id"], dtype=m.get("dtype", "float32"))
        return self._subject

    def tokenizer(self):
        """The subject's tokenizer (without loading the model when it is not loaded yet)."""
        if self._subject is not None:
            return self._subject.tokenizer
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from .models import resolve_model_path

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self.model_id))
        return self._tokenizer

    def set_subject(self, subject) -> None:
        """Uses an already loaded subject (e.g. a randomly initialised test model)."""
        self._subject = subject

    @cached_property
    def planted(self) -> np.ndarray | None:
        """(tokens, N) planted activations of a planted store (see ``eval.planted``), None for a mined one."""
        info = self.manifest.get("planted")
        if not info:
            return None
        try:
            return np.load(self.path / info["activations"], mmap_mode="r")
        except (OSError, ValueError) as e:
            raise StoreError(f"{self.path}: unreadable planted activations ({e})") from None

    @property
    def feature_layer(self) -> int:
        """For a planted store, the subject layer whose activation vectors serve as token features."""
        return int((self.manifest.get("planted") or {}).get("feature_layer", 0))

    def cache_layers(self, layers: int | list[int], max_bytes: int = 6 << 30) -> bool:
        """Computes every neuron of ``layers`` at every mined token in one pass and keeps them in memory.

        Afterwards :meth:`activations_at` for these layers is a lookup (agents, probes and evidence then cost
        no forward pass). Returns False, caching nothing, when ``tokens × neurons × layers × 4`` exceeds
        ``max_bytes``. A new call replaces the previous cache; :meth:`drop_cache` frees it.
        """
        from .models.hooks import layer_activations

        layers = sorted({layers} if isinstance(layers, int) else set(layers))
        if self.planted is not None:
            layers = [self.feature_layer]  # planted values are a lookup already; cache the model's features
        if self._cache is not None and set(layers) <= set(self._cache[1]):
            return True
        self.drop_cache()
        starts, lengths = self.sequences
        seqs = np.asarray([s for a, b in self.manifest.get("sequences", [[0, len(starts)]])
                           for s in range(int(a), int(b))], dtype=np.int64)
        n_tok = int(lengths[seqs].sum()) if len(seqs) else 0
        subject, pk, filled = self.subject(), self.packing, 0
        width = subject.n_neurons
        if n_tok * width * len(layers) * 4 > max_bytes:
            return False
        row = np.full(self.tokens.n_tokens, -1, dtype=np.int64)
        mats = {layer: np.zeros((n_tok, width), dtype=np.float32) for layer in layers}
        for i in range(0, len(seqs), 16):
            chunk = seqs[i : i + 16]
            ids, mask, index, pos = pk.batch(self.tokens, starts[chunk], lengths[chunk])
            acts = layer_activations(subject, ids.to(subject.device), mask.to(subject.device), layers)
            for layer in layers:
                a = acts[layer]
                flat = a.reshape(-1, a.shape[-1])[index.to(a.device)].float().cpu().numpy()
                mats[layer][filled : filled + len(flat)] = flat
            row[pos.numpy()] = np.arange(filled, filled + len(pos))
            filled += len(pos)
        self._cache = (row, mats)
        return True

    def is_cached(self, layer: int) -> bool:
        """True when :meth:`cache_layers` holds ``layer`` (its activations are a lookup)."""
        return self._cache is not None and layer in self._cache[1]

    def drop_cache(self) -> None:
        """Frees the cache of :meth:`cache_layers`."""
        self._cache = None

    def activations_at(self, layer: int, neurons: np.ndarray | list[int], positions: np.ndarray | list[int]) -> np.ndarray:
        """Recomputes activations exactly as mined: ``(P,)`` positions × ``(M,)`` neurons → ``(P, M)`` float32.

        Each position is run inside the packed sequence it was mined in (or read from the layer cache).
        """

        positions = np.asarray(positions, dtype=np.int64)
        if self.planted is not None:
            self._check(layer, 0)
            return np.asarray(self.planted[positions][:, np.asarray(neurons, dtype=np.int64)], dtype=np.float32)
        return self.subject_activations_at(layer, neurons, positions)

    def subject_activations_at(self, layer: int, neurons: np.ndarray | list[int],
                               positions: np.ndarray | list[int]) -> np.ndarray:
        """The subject model's own activations (also for a planted store, whose ``activations_at`` is planted)."""
        from .models.hooks import layer_activations

        positions = np.asarray(positions, dtype=np.int64)
        if self._cache is not None and layer in self._cache[1] and len(positions):
            rows = self._cache[0][positions]
            if (rows >= 0).all():
                # Gather only the asked columns: rows × all neurons first would copy (P, N) to keep (P, M).
                return self._cache[1][layer][np.ix_(rows, np.asarray(neurons, dtype=np.int64))]
        neurons = torch.as_tensor(np.asarray(neurons, dtype=np.int64))
        pk = self.packing
        starts, lengths = self.sequences
        seq = np.searchsorted(starts, positions, side="right") - 1
        out = np.zeros((len(positions), len(neurons)), dtype=np.float32)
        subject = self.subject()
        uniq = np.unique(seq)
        for i in range(0, len(uniq), 16):
            chunk = uniq[i : i + 16]
            ids, mask, index, pos = pk.batch(self.tokens, starts[chunk], lengths[chunk])
            acts = layer_activations(subject, ids.to(subject.device), mask.to(subject.device), [layer])[layer]
            flat = acts.reshape(-1, acts.shape[-1])[index.to(acts.device)][:, neurons.to(acts.device)].float().cpu()
            where = np.searchsorted(pos.numpy(), positions)
            sel = np.isin(seq, chunk)
            out[sel] = flat[torch.as_tensor(where[sel])].numpy()
        return out

    def neuron(self, layer: int, index: int, *, context: tuple[int, int] = (12, 4), activations: bool = True):
        """One neuron's statistics, top (and bottom) exemplars in context, and quantile samples.

        ``context`` = tokens shown before/after each exemplar (clipped to its document);
        ``activations`` recomputes the neuron's activation on every context token with the subject model.
        """
        from .records import neuron_record

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


def open_store(path: str | Path) -> NeuronStore:
    """Opens a finished NeuronStore directory (raises StoreError if missing or corrupt)."""
    return NeuronStore(path)
