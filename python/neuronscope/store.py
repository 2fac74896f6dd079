"""NeuronStore: a directory of per-layer neuron statistics plus the token store they refer to.

Layout::

    manifest.json            model, architecture, layers, neurons per layer, mining config, packing,
                             sequences covered, tokens seen, corpus fingerprint, tokenizer, format
    layer_XX.safetensors     the LayerStats tensors of layer XX (see mining/stats.py)
    tokens/                  the token store (tokens.bin, docs.npy, meta.json), or a path to it

The manifest is written last: a directory without one is not a store.

Opening a store checks what is cheap to check (no tensor is read): the manifest's fields and types, each
layer file's safetensors header (its ``layer`` metadata, tensor names, shapes against ``n_neurons`` and the
mining config), and the token layout (fingerprint, ``sequences`` inside the packing, ``tokens_seen`` equal
to the tokens those sequences hold). Loading a layer checks its counts against ``tokens_seen``; the first
recomputation scans the token ids against the vocabulary. ``neuronscope verify`` (:mod:`neuronscope.verify`)
does the expensive checks.

The model: ``model.id`` is the path mined from; when it no longer exists, the built-in name in ``model.name``
(``minilm``, ``smollm2-135m``, ...) is loaded instead; otherwise ``open_store(path, model=...)`` or the
environment variable ``NEURONSCOPE_MODEL`` points to it (both override the manifest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors import SafetensorError
from safetensors.torch import load_file

from .corpus.packing import Packing
from .corpus.tokenstore import TokenStore
from .errors import ModelError, StoreError
from .io import write_json, write_safetensors
from .mining.spec import MiningConfig
from .mining.stats import LayerStats
from .records import QUANTILES, Exemplar, NeuronRecord, display_tokens
from .store_checks import check_layer_header, check_manifest


class ActivationSource(Protocol):
    """What the store needs from ``neuronscope.activations`` to show recomputed activations (declared here so
    that the store never imports the recomputation side)."""

    def at(self, layer: int, neurons: Sequence[int] | np.ndarray,
           positions: Sequence[int] | np.ndarray) -> np.ndarray: ...



FORMAT = 1
MODEL_ENV = "NEURONSCOPE_MODEL"
"""Environment variable naming the model (directory, hub id or built-in name) of every store opened."""


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
    """The manifest of a store or checkpoint directory: a UTF-8 JSON object of the supported format."""
    path = Path(path)
    file = path / "manifest.json"
    if not file.exists():
        raise StoreError(f"{path} is not a NeuronStore (no manifest.json; an unfinished run leaves none)")
    try:
        manifest = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise StoreError(f"{file}: corrupt manifest: not UTF-8 text ({e})") from None
    except (OSError, ValueError, RecursionError) as e:
        raise StoreError(f"{file}: corrupt manifest: {e}") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"{file}: corrupt manifest: expected a JSON object, found a JSON {type(manifest).__name__}")
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
    """Read access to a finished NeuronStore (see :func:`neuronscope.open_store`).

    ``model``: the subject model to use instead of the manifest's (a directory, hub id or built-in name;
    default ``$NEURONSCOPE_MODEL``, else the manifest's ``model.id``, else its built-in ``model.name``).
    ``manifest["model"]["id"]`` is then the model this process loads; ``stored_model_id`` the one mined from.
    """

    def __init__(self, path: str | Path, *, model: str | None = None) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        file = self.path / "manifest.json"
        self.config, self._packing = check_manifest(self.manifest, file)
        for layer in self.layers:
            check_layer_header(self.path / layer_file(layer), layer, self.n_neurons, self.config)
        self._check_layout(file)
        self.stored_model_id = self.manifest["model"]["id"]
        self._model_problem = self._resolve_model(model or os.environ.get(MODEL_ENV) or None)
        self._stats: dict[int, LayerStats] = {}
        self._tokenizer = None
        self._ids_checked = False

    def _check_layout(self, file: Path) -> None:
        """``sequences`` inside the packed token store and ``tokens_seen`` equal to the tokens they hold."""
        m, tok = self.manifest, self.tokens
        if m.get("corpus_tokens") is not None and m["corpus_tokens"] != tok.n_tokens:
            raise StoreError(f"{file}: field 'corpus_tokens' is {m['corpus_tokens']}, the token store holds "
                             f"{tok.n_tokens}")
        starts, lengths = self._layout
        ranges = self.sequence_ranges
        if ranges and ranges[-1][1] > len(starts):
            raise StoreError(f"{file}: field 'sequences' reaches sequence {ranges[-1][1]}, but packing "
                             f"(seq_len {self.packing.seq_len}, {self.packing.mode}) cuts the {tok.n_tokens} "
                             f"tokens into {len(starts)} (an edited 'packing' or 'sequences'; mine again)")
        held = tok.n_tokens if m.get("planted") else sum(int(lengths[a:b].sum()) for a, b in ranges)
        if held != self.n_tokens_seen:
            raise StoreError(f"{file}: field 'tokens_seen' is {self.n_tokens_seen}, but 'sequences' {ranges} hold "
                             f"{held} tokens under packing seq_len {self.packing.seq_len} (an edited 'packing', "
                             "'sequences' or 'tokens_seen'; mine again)")

    def _resolve_model(self, override: str | None) -> str | None:
        """Sets the model to load; returns why none can be (raised when the model is needed), else None."""
        from .models.loading import ALIASES
        from .models.packaged import PACKAGED, packaged
        from .models.registry import model_name

        m = self.manifest["model"]
        stored, name = m["id"], m.get("name")
        use, problem = stored, None
        if override is not None:
            use = str(override)
        elif ("/" in stored or os.sep in stored) and not Path(stored).expanduser().exists():
            if name and (name.lower() in ALIASES or packaged(name) is not None):
                use = name
            else:
                problem = (f"{self.path}: the store needs the model {name or model_name(stored)!r}, mined from "
                           f"{stored}, which no longer exists; point to it with {MODEL_ENV}=/path/to/the/model "
                           f"(or open_store(path, model=...), or neuronscope verify --model); built-in names: "
                           f"{', '.join(['minilm', *PACKAGED])}")
        self.manifest["model"] = {**m, "id": use}
        return problem

    def __repr__(self) -> str:
        return (f"NeuronStore({str(self.path)!r}, model={self.model_id!r}, layers={self.layers}, "
                f"neurons={self.n_neurons}, tokens={self.n_tokens_seen})")

    @property
    def model_id(self) -> str:
        """The model this process loads (see the class docstring), as a label: :meth:`subject_model` checks it."""
        return self.manifest["model"]["id"]

    def subject_model(self) -> str:
        """The model to load for this store (a path, hub id or built-in name); ModelError naming the model the
        store needs, and how to point to it, when it no longer exists."""
        if self._model_problem:
            raise ModelError(self._model_problem)
        return self.model_id

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
        return self._packing

    @property
    def vocab_size(self) -> int | None:
        """The tokenizer's vocabulary size recorded at mining time (None in a manifest without it)."""
        return (self.manifest.get("tokenizer") or {}).get("vocab_size")

    @property
    def sequence_ranges(self) -> list[list[int]]:
        """``[start, stop)`` ranges of the packed sequences mined (all of them when the manifest has none)."""
        seqs = self.manifest.get("sequences")
        return [list(r) for r in seqs] if seqs is not None else [[0, len(self._layout[0])]]

    @cached_property
    def tokens(self) -> TokenStore:
        ts = TokenStore(self.path / self.manifest.get("token_store", "tokens"))
        if ts.fingerprint != self.manifest["corpus_fingerprint"]:
            raise StoreError(f"{self.path}: token store fingerprint differs from the manifest's")
        return ts

    @cached_property
    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        return self.packing.sequences(self.tokens)

    @property
    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, lengths)`` of the packed sequences (what every recomputation reads: the first call checks
        every token id against the vocabulary, so a bad id is named here, not deep in the model)."""
        if not self._ids_checked:
            ts, step = self.tokens, 1 << 22  # read in chunks, not through the map (its pages would stay resident)
            for a in range(0, ts.n_tokens if self.vocab_size else 0, step):
                self.check_token_ids(ts.read(a, min(step, ts.n_tokens - a)), a)
            self._ids_checked = True
        return self._layout

    def check_token_ids(self, ids: np.ndarray, offset: int) -> None:
        """Raises StoreError for a token id outside the vocabulary; ``ids`` = the tokens from ``offset`` on."""
        vocab, step = self.vocab_size, 1 << 24
        for a in range(0, len(ids) if vocab else 0, step):
            chunk = np.asarray(ids[a : a + step])
            if len(chunk) and int(chunk.max()) >= vocab:
                bad = a + int(np.argmax(chunk >= vocab))
                raise StoreError(f"{self.tokens.path / 'tokens.bin'}: token id {int(chunk[bad - a])} at position "
                                 f"{offset + bad} is outside the vocabulary of {vocab} (a corrupt or foreign "
                                 "token store; neuronscope verify checks every id)")

    def stats(self, layer: int) -> LayerStats:
        """All statistics of one layer (loaded once, then cached; every neuron must count ``tokens_seen``)."""
        if layer not in self.layers:
            raise StoreError(f"layer {layer} not in this store (layers: {self.layers})")
        if layer not in self._stats:
            st = read_stats(self.path, layer, self.config)
            file = self.path / layer_file(layer)
            if st.n_neurons != self.n_neurons:
                raise StoreError(f"{file}: holds {st.n_neurons} neurons, the manifest's n_neurons is {self.n_neurons}")
            seen = (st.count + st.nonfinite).numpy()
            bad = np.flatnonzero(seen != self.n_tokens_seen)
            if len(bad):
                raise StoreError(f"{file}: neuron {int(bad[0])} counts {int(seen[bad[0]])} tokens, the manifest's "
                                 f"tokens_seen is {self.n_tokens_seen} ({len(bad)} neurons differ: a layer file of "
                                 "another run)")
            self._stats[layer] = st
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
        """The subject's tokenizer, read from the model's files (the model itself is not loaded); refused when
        its vocabulary is not the one the store was mined with."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from .models import resolve_model_path

            path = resolve_model_path(self.subject_model())
            hint = f"point {MODEL_ENV} (or open_store(path, model=...)) to the model the store was mined with"
            if ("/" in path or os.sep in path) and not Path(path).expanduser().exists():
                raise ModelError(f"{self.path}: model {path!r} does not exist; {hint}")
            try:
                tok = AutoTokenizer.from_pretrained(path)
            except (OSError, ValueError) as e:
                raise ModelError(f"{self.path}: cannot read the tokenizer of model {path!r} ({e}); {hint}") from e
            if self.vocab_size is not None and len(tok) != self.vocab_size:
                raise ModelError(f"{self.path}: model {path!r} has a vocabulary of {len(tok)} tokens, the store "
                                 f"was mined with {self.vocab_size} (mined from {self.stored_model_id}); {hint}")
            self._tokenizer = tok
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
            "model_name": m["model"].get("name"),
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
    for a, b in windows:
        store.check_token_ids(tok.tokens[a:b], a)
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


def open_store(path: str | Path, *, model: str | None = None) -> NeuronStore:
    """Opens a finished NeuronStore directory (raises StoreError if missing or corrupt); ``model`` replaces the
    manifest's subject model (see :class:`NeuronStore`)."""
    return NeuronStore(path, model=model)
