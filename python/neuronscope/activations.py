"""Where true activations come from: the subject model (with a bounded layer cache) or planted neurons.

A NeuronStore only reads what mining wrote; everything recomputed goes through an
:class:`ActivationSource`:

- ``at(layer, neurons, positions)`` — the neurons' activations at global token positions, exactly as
  mined (each position inside the packed sequence it was mined in);
- ``vectors(layer, positions)`` — the whole layer's activation vectors there, the subject model's own
  contextual representation of the tokens (what the agents cluster modes on); ``feature_layer(layer)``
  says which subject layer represents the tokens for a neuron of ``layer``;
- ``on_texts(texts, layer, neurons)`` — activations on new text (the refinement agent's probe texts);
- ``prepare(layers)`` and ``is_lookup(layer)`` — one pass over the mined corpus up front, after which
  ``at`` is a lookup for those layers (agents, probes and evidence then cost no forward pass).

:func:`activation_source` picks the implementation a store needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import StoreError

if TYPE_CHECKING:
    from .models import Subject
    from .store import NeuronStore

CACHE_MEMORY_SHARE = 0.5
"""Share of the memory available when a cache is built that it may take (``NEURONSCOPE_CACHE_BYTES`` overrides)."""


def available_memory_bytes() -> int:
    """Memory that can be allocated now without swapping: ``MemAvailable`` (Linux), else a quarter of RAM."""
    from .sysinfo import proc_kib, total_memory_bytes

    avail = proc_kib("/proc/meminfo", "MemAvailable")
    return avail if avail is not None else (total_memory_bytes() // 4 or 1 << 30)


def cache_budget(max_cache_bytes: int | None = None) -> int:
    """Bytes a layer cache may take: ``max_cache_bytes`` if given, else ``NEURONSCOPE_CACHE_BYTES`` if set,
    else :data:`CACHE_MEMORY_SHARE` of the memory available now (so a small machine caches less, a large one
    more, and nothing is sized for a machine it is not running on)."""
    import os

    if max_cache_bytes is not None:
        return int(max_cache_bytes)
    env = os.environ.get("NEURONSCOPE_CACHE_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise StoreError(f"NEURONSCOPE_CACHE_BYTES must be a number of bytes, got {env!r}") from None
    return int(CACHE_MEMORY_SHARE * available_memory_bytes())


class ActivationSource(Protocol):
    """The activations an explainer, scorer or report may ask for (see the module docstring)."""

    def at(self, layer: int, neurons: Sequence[int] | np.ndarray, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(P,)`` positions × ``(M,)`` neurons → ``(P, M)`` float32."""
        ...

    def vectors(self, layer: int, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(P,)`` positions → ``(P, N)`` float32: the subject layer's whole activation vector at each."""
        ...

    def feature_layer(self, layer: int) -> int:
        """The subject layer whose vectors represent tokens for a neuron of ``layer``."""
        ...

    def on_texts(self, texts: Sequence[str], layer: int, neurons: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each text: ``(ids (L,) int64, acts (L, M) float32)`` of its tokens."""
        ...

    def prepare(self, layers: Sequence[int]) -> bool:
        """Makes ``at`` a lookup for these layers when memory allows; True if it did."""
        ...

    def is_lookup(self, layer: int) -> bool:
        """Whether ``at`` for this layer is a lookup (no forward pass)."""
        ...




class SubjectActivations:
    """Activations recomputed with the store's subject model, with a bounded in-memory layer cache.

    ``subject``: an already loaded model (e.g. a randomly initialised test model); by default the store's
    model is loaded on first use. ``max_cache_bytes`` bounds :meth:`prepare` (tokens × neurons × layers × 4);
    by default it is sized from the memory available when the cache is built (:func:`cache_budget`).
    """

    def __init__(self, store: NeuronStore, subject: Subject | None = None, *,
                 max_cache_bytes: int | None = None) -> None:
        self.store = store
        self._subject = subject
        self.max_cache_bytes = max_cache_bytes
        self._cache: tuple[np.ndarray, dict[int, np.ndarray]] | None = None  # (row of position, {layer: (rows, N)})

    def subject(self) -> Subject:
        """The subject model (loaded on first use)."""
        if self._subject is None:
            from .models import load_subject

            m = self.store.manifest["model"]
            # subject_model() names the model a moved store needs, and how to point to it, if it is gone.
            model = self.store.subject_model() if hasattr(self.store, "subject_model") else m["id"]
            self._subject = load_subject(model, dtype=m.get("dtype", "float32"))
        return self._subject

    @property
    def n_neurons(self) -> int:
        return self.store.n_neurons

    def feature_layer(self, layer: int) -> int:
        return layer

    def prepare(self, layers: Sequence[int] | int) -> bool:
        """Computes every neuron of ``layers`` at every mined token in one pass and keeps them in memory.

        Returns False, caching nothing, when the cache would exceed its budget (:func:`cache_budget`, taken
        after the previous cache is freed); callers then prepare one layer at a time. A new call replaces the
        previous cache; :meth:`drop_cache` frees it.
        """
        from .models.hooks import layer_activations

        store = self.store
        layers = sorted({layers} if isinstance(layers, int) else set(layers))
        if self._cache is not None and set(layers) <= set(self._cache[1]):
            return True
        self.drop_cache()
        starts, lengths = store.sequences
        seqs = np.asarray([s for a, b in store.manifest.get("sequences", [[0, len(starts)]])
                           for s in range(int(a), int(b))], dtype=np.int64)
        n_tok = int(lengths[seqs].sum()) if len(seqs) else 0
        subject, pk, filled = self.subject(), store.packing, 0
        width = subject.n_neurons
        if n_tok * width * len(layers) * 4 > cache_budget(self.max_cache_bytes):
            return False
        row = np.full(store.tokens.n_tokens, -1, dtype=np.int64)
        mats = {layer: np.zeros((n_tok, width), dtype=np.float32) for layer in layers}
        for i in range(0, len(seqs), 16):
            chunk = seqs[i : i + 16]
            ids, mask, index, pos = pk.batch(store.tokens, starts[chunk], lengths[chunk])
            acts = layer_activations(subject, ids.to(subject.device), mask.to(subject.device), layers)
            for layer in layers:
                a = acts[layer]
                flat = a.reshape(-1, a.shape[-1])[index.to(a.device)].float().cpu().numpy()
                mats[layer][filled : filled + len(flat)] = flat
            row[pos.numpy()] = np.arange(filled, filled + len(pos))
            filled += len(pos)
        self._cache = (row, mats)
        return True

    def is_lookup(self, layer: int) -> bool:
        return self._cache is not None and layer in self._cache[1]

    def drop_cache(self) -> None:
        self._cache = None

    def at(self, layer: int, neurons: Sequence[int] | np.ndarray, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        import torch

        from .models.hooks import layer_activations

        store = self.store
        if layer not in store.layers:
            raise StoreError(f"layer {layer} not in this store (layers: {store.layers})")
        positions = np.asarray(positions, dtype=np.int64)
        cols = np.asarray(neurons, dtype=np.int64)
        if self._cache is not None and layer in self._cache[1] and len(positions):
            rows = self._cache[0][positions]
            if (rows >= 0).all():
                # Gather only the asked columns: rows × all neurons first would copy (P, N) to keep (P, M).
                return self._cache[1][layer][np.ix_(rows, cols)]
        idx = torch.as_tensor(cols)
        pk = store.packing
        starts, lengths = store.sequences
        seq = np.searchsorted(starts, positions, side="right") - 1
        out = np.zeros((len(positions), len(cols)), dtype=np.float32)
        subject = self.subject()
        uniq = np.unique(seq)
        for i in range(0, len(uniq), 16):
            chunk = uniq[i : i + 16]
            ids, mask, index, pos = pk.batch(store.tokens, starts[chunk], lengths[chunk])
            acts = layer_activations(subject, ids.to(subject.device), mask.to(subject.device), [layer])[layer]
            flat = acts.reshape(-1, acts.shape[-1])[index.to(acts.device)][:, idx.to(acts.device)].float().cpu()
            where = np.searchsorted(pos.numpy(), positions)
            sel = np.isin(seq, chunk)
            out[sel] = flat[torch.as_tensor(where[sel])].numpy()
        return out

    def vectors(self, layer: int, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.at(layer, np.arange(self.subject().n_neurons), positions)

    def on_texts(self, texts: Sequence[str], layer: int, neurons: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        from .models.probe import text_activations

        pk = self.store.packing
        return text_activations(self.subject(), list(texts), layer, list(neurons), prefix=pk.prefix, suffix=pk.suffix)


class PlantedActivations:
    """Planted neurons (``eval.planted``): their values over the corpus are a lookup, their definition runs
    on new text, and the subject model's own vectors at the store's ``feature_layer`` represent tokens."""

    def __init__(self, store: NeuronStore, subject: Subject | None = None, *,
                 max_cache_bytes: int | None = None) -> None:
        info = store.manifest.get("planted")
        if not info:
            raise StoreError(f"{store.path} is not a planted store")
        self.store = store
        try:
            self.values = np.load(store.path / info["activations"], mmap_mode="r")
        except (OSError, ValueError, KeyError) as e:
            raise StoreError(f"{store.path}: unreadable planted activations ({e})") from None
        if self.values.ndim != 2 or self.values.shape[1] != store.n_neurons:
            raise StoreError(f"{store.path}: planted activations have shape {self.values.shape}, "
                             f"expected (tokens, {store.n_neurons})")
        self._feature_layer = int(info.get("feature_layer", 0))
        self.subject_source = SubjectActivations(_FeatureStore(store, self._feature_layer), subject,
                                                 max_cache_bytes=max_cache_bytes)
        self._definitions = None

    @property
    def n_neurons(self) -> int:
        return self.store.n_neurons

    def feature_layer(self, layer: int) -> int:
        return self._feature_layer

    def prepare(self, layers: Sequence[int] | int) -> bool:
        # The planted values are a lookup already; cache the subject's feature layer instead.
        return self.subject_source.prepare([self._feature_layer])

    def is_lookup(self, layer: int) -> bool:
        return True

    def at(self, layer: int, neurons: Sequence[int] | np.ndarray, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        if layer not in self.store.layers:
            raise StoreError(f"layer {layer} not in this store (layers: {self.store.layers})")
        positions = np.asarray(positions, dtype=np.int64)
        return np.asarray(self.values[positions][:, np.asarray(neurons, dtype=np.int64)], dtype=np.float32)

    def vectors(self, layer: int, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.subject_source.vectors(self._feature_layer, positions)

    def on_texts(self, texts: Sequence[str], layer: int, neurons: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The planted definition on each text, noise-free: ``eval.definition.definition``, the code that also
        defines the corpus values (there with dropout and noise added); each text is one document."""
        from .eval.definition import PlantedNeuron, TokenStream, definition
        from .explanations.conditions import ConditionEvaluator
        from .explanations.vocab import Vocab

        tokenizer = self.store.tokenizer()
        if self._definitions is None:
            import json

            spec = json.loads((self.store.path / self.store.manifest["planted"]["ground_truth"]).read_text())
            self._definitions = [PlantedNeuron.from_dict(n) for n in spec["neurons"]]
            self._vocab = Vocab.from_tokenizer(tokenizer)
            self._evaluator = ConditionEvaluator(self._vocab)
        out = []
        for text in texts:
            # User text is text: "[CLS]" typed in a probe is characters, never the special id.
            ids = np.asarray(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"][:256],
                             dtype=np.int64)
            stream = TokenStream(ids, np.zeros(len(ids), dtype=np.int64), self._vocab, self._evaluator)
            acts = np.zeros((len(ids), len(neurons)), dtype=np.float32)
            for j, n in enumerate(neurons):
                acts[:, j] = definition(self._definitions[int(n)], stream)
            out.append((ids, acts))
        return out


class _FeatureStore:
    """A planted store seen as its subject's store: same tokens and packing, the feature layer as its layer."""

    def __init__(self, store: NeuronStore, layer: int) -> None:
        self._store, self.layers = store, [layer]

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def activation_source(store: NeuronStore, subject: Subject | None = None, *,
                      max_cache_bytes: int | None = None) -> ActivationSource:
    """The activation source a store needs: planted values for a planted store, else its subject model."""
    cls = PlantedActivations if store.manifest.get("planted") else SubjectActivations
    return cls(store, subject, max_cache_bytes=max_cache_bytes)
