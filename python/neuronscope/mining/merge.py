"""Exact merge of NeuronStores mined over disjoint sequence ranges of the same corpus (ranks or runs)."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from ..errors import StoreError
from ..store import NeuronStore, open_store, write_manifest, write_stats
from .reference import merge_stats

_MUST_MATCH = ("model", "layers", "n_neurons", "mining", "packing", "corpus_fingerprint", "tokenizer")


def _overlaps(ranges: list[list[int]]) -> bool:
    ranges = sorted(ranges)
    return any(a[1] > b[0] for a, b in itertools.pairwise(ranges))


def merge_stores(paths: list[str | Path], out: str | Path, *, token_store: str | Path | None = None) -> NeuronStore:
    """Merges stores into ``out``; refuses stores of another model/corpus/config or overlapping sequences.

    Top-k, bottom-k, counts, min/max, histograms and samples merge exactly; mean and M2 with Chan's
    formula (float64). ``token_store``: the shared token store (default: the first store's, copied).
    """
    if not paths:
        raise StoreError("nothing to merge: give at least one store")
    stores = [open_store(p) for p in paths]
    first = stores[0].manifest
    for s in stores[1:]:
        for key in _MUST_MATCH:
            if s.manifest.get(key) != first.get(key):
                raise StoreError(f"cannot merge {s.path} into {stores[0].path}: their {key!r} differ")
    ranges = [r for s in stores for r in s.manifest.get("sequences", [])]
    if _overlaps(ranges):
        raise StoreError(f"cannot merge: the stores cover overlapping sequences {sorted(ranges)} (would double count)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = stores[0].config
    merged = {}
    for layer in first["layers"]:
        acc = stores[0].stats(layer)
        for s in stores[1:]:
            acc = merge_stats(acc, s.stats(layer), cfg)
        merged[layer] = acc
    write_stats(out, merged)
    if token_store is None:
        src = stores[0].tokens.path
        if src.resolve() != (out / "tokens").resolve():
            shutil.copytree(src, out / "tokens", dirs_exist_ok=True)
        token_store = out / "tokens"
    manifest = {k: v for k, v in first.items() if k not in ("format", "part")}  # the merge is no one part
    manifest.update(
        sequences=_union(ranges),
        tokens_seen=sum(s.n_tokens_seen for s in stores),
        token_store=os.path.relpath(Path(token_store), out),
        seconds=round(sum(float(s.manifest.get("seconds") or 0) for s in stores), 3),
        merged_from=len(stores),
    )
    write_manifest(out, manifest)
    return open_store(out)


def _union(ranges: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and out[-1][1] == a:
            out[-1][1] = b
        else:
            out.append([a, b])
    return out
