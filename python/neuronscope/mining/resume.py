"""Whether a rerun of ``mine`` may use what its output already holds, and the checkpoints it resumes from.

A finished store is returned as is only when every setting that decides what is mined matches the
request; a checkpoint is resumed only when the rerun would mine the same batches of the same sequences
with the same model and statistics. Anything else is refused with the differing keys named (stored value
first), so a rerun never mixes two runs' statistics or passes one run's store off as another's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..errors import StoreError
from ..io import atomic_dir, remove_stale_temps
from ..store import read_manifest, read_stats, write_manifest, write_stats
from .spec import MiningConfig
from .stats import LayerStats

RESUME_KEYS = ("model", "layers", "n_neurons", "tokenizer", "mining", "packing", "corpus_fingerprint",
               "max_tokens", "batch_tokens", "part")
"""Manifest keys a checkpoint and the rerun resuming it must agree on (``model`` without its ``name``)."""

_UNRECORDED = "(not recorded)"


def _resume_view(manifest: dict) -> dict:
    out = {k: manifest.get(k, _UNRECORDED) for k in RESUME_KEYS}
    model = manifest.get("model")
    if isinstance(model, dict):  # the name is how the user spelled it; id, type and dtype are what ran
        out["model"] = {k: v for k, v in model.items() if k != "name"}
    return out


def _differences(before: dict, now: dict) -> dict[str, tuple]:
    """``key -> (before, now)`` for every differing key; dict values are compared per sub-key."""
    diff: dict[str, tuple] = {}
    for key, want in now.items():
        have = before.get(key, _UNRECORDED)
        if have == want:
            continue
        if isinstance(have, dict) and isinstance(want, dict):
            for sub in sorted(set(have) | set(want)):
                if have.get(sub, _UNRECORDED) != want.get(sub, _UNRECORDED):
                    diff[f"{key}.{sub}"] = (have.get(sub, _UNRECORDED), want.get(sub, _UNRECORDED))
        else:
            diff[key] = (have, want)
    return diff


def describe(diff: dict[str, tuple], then: str = "stored") -> str:
    """``batch_tokens: 1024 stored, 4096 now; layers: [1] stored, [3] now``."""
    return "; ".join(f"{key}: {a!r} {then}, {b!r} now" for key, (a, b) in diff.items())


def _same_model(given: str, stored: dict) -> bool:
    """The requested model is the stored one: same built-in name, or the same resolved path or hub id."""
    from ..models.loading import resolve_model_path

    if given == stored.get("name") and not os.path.exists(given):
        return True  # a built-in name or hub id (a path's meaning depends on where it is resolved)
    sid = str(stored.get("id"))
    path = resolve_model_path(given)
    if path == sid:
        return True
    return os.path.exists(path) and os.path.exists(sid) and Path(path).resolve() == Path(sid).resolve()


def finished_differences(store_dir: Path, m: dict, *, model: str, model_is_id: bool, dtype: str,
                         layers: list[int], corpus: dict, max_tokens: int | None, seq_len: int | None,
                         packing: str, batch_tokens: int, mining: dict, part: list[int] | None) -> dict[str, tuple]:
    """``key -> (stored, requested)`` for each setting of the request that the finished store ``m`` was not
    mined with. Settings an older store does not record (batch size, default sequence length) are skipped.
    ``model_is_id``: ``model`` is a loaded subject's id, compared as is."""
    diff: dict[str, tuple] = {}
    stored_model = m.get("model") or {}
    if not (model == stored_model.get("id") if model_is_id else _same_model(model, stored_model)):
        diff["model"] = (stored_model.get("name", stored_model.get("id")), model)
    if "max_tokens" in m:
        stored_max = m["max_tokens"]
    else:  # stores written before the manifest recorded it: the token store's meta says
        meta = store_dir / m.get("token_store", "tokens") / "meta.json"
        stored_max = json.loads(meta.read_text()).get("max_tokens") if meta.exists() else max_tokens
    pk = m.get("packing") or {}
    want_seq = seq_len if seq_len is not None else m.get("default_seq_len", pk.get("seq_len"))
    checks = {
        "model.dtype": (stored_model.get("dtype"), dtype),
        "layers": (m.get("layers"), layers),
        "corpus": (m.get("corpus"), corpus),
        "max_tokens": (stored_max, max_tokens),
        "packing.mode": (pk.get("mode"), packing),
        "packing.seq_len": (pk.get("seq_len"), want_seq),
        "batch_tokens": (m.get("batch_tokens", batch_tokens), batch_tokens),
        "part": (m.get("part"), part),
    }
    diff.update({k: v for k, v in checks.items() if v[0] != v[1]})
    diff.update(_differences({"mining": m.get("mining")}, {"mining": mining}))
    return diff


def _store_entry(name: str) -> bool:
    """A name ``mine`` writes in its output (the temp files of nothing else there are touched)."""
    return name in ("checkpoint", "tokens", "manifest.json") or bool(re.fullmatch(r"layer_\d+\.safetensors", name))


def clean_leftovers(work: Path, *, finished: bool) -> None:
    """Removes what a killed run left in ``work``: writers' temp files (a swap cut between its renames is
    put back first) and, once the store is finished, its last checkpoint. Call while holding the output."""
    remove_stale_temps(work, _store_entry)
    if finished and (work / "checkpoint").exists():
        drop_checkpoint(work)


def drop_checkpoint(work: Path) -> None:
    """Deletes the checkpoint of a finished run; a kill midway leaves a temp name the next run clears."""
    ckpt = work / "checkpoint"
    if ckpt.exists():
        gone = work / ".checkpoint.finished.tmp"
        shutil.rmtree(gone, ignore_errors=True)
        os.replace(ckpt, gone)
        shutil.rmtree(gone, ignore_errors=True)


def resume(work: Path, manifest: dict, layers: list[int], n: int, cfg: MiningConfig, first: int):
    """``(stats, next_batch, [seconds])`` from the checkpoint in ``work``, or empty statistics at ``first``.

    Refuses a checkpoint that another configuration wrote: its batches would not be this run's.
    """
    ckpt = work / "checkpoint"
    if (ckpt / "manifest.json").exists():
        saved = read_manifest(ckpt)
        diff = _differences(_resume_view(saved), _resume_view(manifest))
        if diff:
            raise StoreError(f"{work} holds a checkpoint of a run with other settings ({describe(diff, 'then')}); "
                             "rerun with those settings to resume, or use a new --out (nothing was overwritten)")
        stats = {layer: read_stats(ckpt, layer, cfg) for layer in layers}
        return stats, int(saved["next_batch"]), [float(saved.get("seconds", 0.0))]
    return {layer: LayerStats.empty(n, cfg) for layer in layers}, first, [0.0]


def checkpoint(work: Path, stats: dict[int, LayerStats], manifest: dict, next_batch: int, seconds: float) -> None:
    """Replaces the checkpoint in ``work`` atomically: the statistics before batch ``next_batch``."""
    with atomic_dir(work / "checkpoint") as tmp:
        write_stats(tmp, stats)
        write_manifest(tmp, {**manifest, "next_batch": next_batch, "seconds": seconds})
