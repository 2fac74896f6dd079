"""The checks a NeuronStore runs when it opens, all cheap (no tensor is read): the manifest's fields and
types, and each layer file's safetensors header. ``neuronscope.verify`` does the expensive ones.

Each failure is a StoreError naming the file and the field (``manifest.json: field 'tokens_seen' must be a
non-negative integer, got NaN``), never a KeyError or TypeError from deep inside.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .corpus.packing import Packing
from .errors import ConfigError, StoreError
from .mining.spec import MiningConfig
from .mining.stats import LayerStats

_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def _is_int(v: object, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _is_ints(v: object) -> bool:
    return isinstance(v, list) and all(_is_int(x) for x in v)


def _is_ranges(v: object) -> bool:
    pairs = isinstance(v, list) and all(isinstance(r, list) and len(r) == 2 and _is_int(r[0]) and _is_int(r[1])
                                        and r[0] <= r[1] for r in v)
    return pairs and all(a[1] <= b[0] for a, b in itertools.pairwise(v))


def _field(obj: dict, key: str, ok: Callable[[object], bool], want: str, file: Path, prefix: str = "",
           optional: bool = False) -> object:
    """``obj[key]`` if ``ok`` accepts it; a StoreError naming the file and the field otherwise."""
    if obj.get(key) is None:
        if optional:
            return None
        raise StoreError(f"{file}: missing field {prefix + key!r}")
    value = obj[key]
    if not ok(value):
        shown = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
        raise StoreError(f"{file}: field {prefix + key!r} must be {want}, got {shown[:80]}")
    return value


def check_manifest(m: dict, file: Path) -> tuple[MiningConfig, Packing]:
    """Checks a finished store's manifest fields and types; returns its mining config and packing."""
    is_obj = lambda v: isinstance(v, dict)  # noqa: E731
    is_str = lambda v: isinstance(v, str) and v != ""  # noqa: E731
    model = _field(m, "model", is_obj, "an object", file)
    _field(model, "id", is_str, "a model path or name", file, "model.")
    _field(model, "name", is_str, "a model name", file, "model.", optional=True)
    _field(model, "dtype", lambda v: v in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16",
           file, "model.", optional=True)
    _field(m, "architecture", is_str, "a model type", file)
    layers = _field(m, "layers", lambda v: _is_ints(v) and v and len(set(v)) == len(v),
                    "a non-empty list of distinct layer numbers", file)
    depth = _field(m, "n_layers_model", lambda v: _is_int(v, 1), "a positive integer", file, optional=True)
    if depth is not None and max(layers) >= depth:
        raise StoreError(f"{file}: field 'layers' holds layer {max(layers)}, the model has {depth} layers")
    _field(m, "n_neurons", lambda v: _is_int(v, 1), "a positive integer", file)
    _field(m, "tokens_seen", _is_int, "a non-negative integer", file)
    _field(m, "corpus_fingerprint", is_str, "a fingerprint string", file)
    _field(m, "token_store", is_str, "a directory path", file, optional=True)
    _field(m, "corpus_tokens", _is_int, "a non-negative integer", file, optional=True)
    _field(m, "sequences", _is_ranges, "sorted, disjoint [start, stop] ranges of sequence numbers", file,
           optional=True)
    tok = _field(m, "tokenizer", is_obj, "an object", file, optional=True) or {}
    _field(tok, "vocab_size", lambda v: _is_int(v, 1), "a positive integer", file, "tokenizer.", optional=True)
    _field(m, "planted", is_obj, "an object", file, optional=True)
    mining = _field(m, "mining", is_obj, "an object", file)
    for key in MiningConfig.__dataclass_fields__:
        _field(mining, key, lambda v: _is_int(v, -(1 << 62)), "an integer", file, "mining.", optional=True)
    pk = _field(m, "packing", is_obj, "an object", file)
    for key, ok, want in (("seq_len", lambda v: _is_int(v, 1), "a positive integer"), ("prefix", _is_ints, "token ids"),
                          ("suffix", _is_ints, "token ids"), ("pad_id", _is_int, "a token id"),
                          ("mode", lambda v: v in ("stream", "doc"), "'stream' or 'doc'")):
        _field(pk, key, ok, want, file, "packing.")
    vocab = tok.get("vocab_size")
    special = [*pk["prefix"], *pk["suffix"], pk["pad_id"]]
    if vocab is not None and max(special) >= vocab:
        raise StoreError(f"{file}: field 'packing' holds token id {max(special)}, the vocabulary has {vocab}")
    try:
        return MiningConfig.from_dict(mining), Packing(**{k: pk[k] for k in Packing.__dataclass_fields__ if k in pk})
    except ConfigError as e:
        raise StoreError(f"{file}: {e}") from None


def check_layer_header(file: Path, layer: int, n_neurons: int, cfg: MiningConfig) -> None:
    """Checks one layer file from its safetensors header alone (no tensor is read): the ``layer`` it was
    written for, its tensor names, and every shape and dtype against ``n_neurons`` and ``cfg``."""
    if not file.exists():
        raise StoreError(f"{file.parent}: missing {file.name}")
    try:
        with safe_open(file, framework="pt") as f:
            meta = f.metadata() or {}
            got = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise StoreError(f"{file}: unreadable safetensors header: {e}") from e
    if meta.get("layer") != str(layer):
        held = f"layer {meta['layer']}" if "layer" in meta else "no layer metadata"
        raise StoreError(f"{file}: holds the statistics of {held}, not of layer {layer} (a copied or renamed "
                         "layer file; mine the layer again)")
    for name, t in LayerStats.empty(0, cfg).to_tensors().items():
        want = ((n_neurons, *t.shape[1:]), _SAFETENSORS_DTYPES[t.dtype])
        if name not in got:
            raise StoreError(f"{file}: missing tensor {name!r}")
        if got[name] != want:
            raise StoreError(f"{file}: tensor {name!r} has shape {list(got[name][0])} / {got[name][1]}, expected "
                             f"{list(want[0])} / {want[1]} (manifest n_neurons {n_neurons} and its mining config)")
