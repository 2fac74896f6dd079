"""``mine``: one pass over a corpus collecting every selected neuron's statistics into a NeuronStore.

Resumable (atomic checkpoints of the statistics at batch boundaries; a resumed run processes the same
batches in the same order, so its store is identical to an uninterrupted run's) and distributed
(``torchrun``: rank r mines a contiguous range of batches into ``ranks/rank_r``, rank 0 merges). The same
ranges can be mined by separate runs (``part=(i, n)``) and merged with ``merge_stores``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..corpus import CorpusSpec, TokenStore, build_token_store, tokenizer_id
from ..corpus.packing import PackMode, make_packing
from ..errors import ConfigError, StoreError
from ..models import Subject, load_subject
from ..models.hooks import _StopForward, neuron_hooks
from ..stage import output_lock
from ..store import NeuronStore, open_store, write_manifest, write_stats
from .backend import resolve_backend
from .resume import checkpoint, clean_leftovers, describe, drop_checkpoint, finished_differences, resume
from .spec import MiningConfig
from .stats import LayerStats


class _Interrupted(Exception):
    """Raised by the test hook ``_stop_after_batches`` to simulate a kill after a checkpoint."""


def parse_layers(spec: str | list[int] | None, n_layers: int) -> list[int]:
    """``all`` | ``0,3,5-7`` | a list → sorted unique layer indices, validated against the model."""
    if spec is None or spec == "all":
        return list(range(n_layers))
    if isinstance(spec, str):
        out: set[int] = set()
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part[1:]:
                    lo, hi = part.split("-", 1)
                    out.update(range(int(lo), int(hi) + 1))
                else:
                    out.add(int(part))
            except ValueError:
                raise ConfigError(f"bad layer spec {spec!r}: expected 'all' or e.g. '0,3,5-7'") from None
        layers = sorted(out)
    else:
        layers = sorted(set(int(x) for x in spec))
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad or not layers:
        raise ConfigError(f"layers {bad or spec} out of range: the model has layers 0..{n_layers - 1}")
    return layers


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def _init_distributed(device: str) -> _Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def _corpus_key(spec: CorpusSpec) -> dict:
    """The corpus as the token store and the manifest record it."""
    return {"source": spec.source, "text_field": spec.text_field, "doc_split": spec.doc_split, "split": spec.split}


def _token_store(out: Path, spec: CorpusSpec, subject: Subject, max_tokens: int | None, workers: int,
                 progress: bool) -> TokenStore:
    path = out / "tokens"
    if (path / "meta.json").exists():
        ts = TokenStore(path)
        want = {"corpus": _corpus_key(spec), "max_tokens": max_tokens, "tokenizer": tokenizer_id(subject.tokenizer)}
        diff = {k: (ts.meta.get(k), v) for k, v in want.items() if ts.meta.get(k) != v}
        if diff:
            raise StoreError(f"{out} already holds a token store of other settings ({describe(diff)}); "
                             "rerun with those settings or use a new --out directory (nothing was overwritten)")
        return ts
    ts, skips = build_token_store(spec, subject.tokenizer, path, max_tokens=max_tokens, workers=workers,
                                  progress=progress)
    if progress:
        print(f"tokenized {ts.n_docs} documents, {ts.n_tokens} tokens; {skips}")
    return ts


def mine(
    model: str | Subject,
    corpus: str | CorpusSpec,
    out: str | Path,
    *,
    layers: str | list[int] | None = "all",
    config: MiningConfig | None = None,
    max_tokens: int | None = None,
    batch_tokens: int = 8192,
    seq_len: int | None = None,
    packing: PackMode = "stream",
    backend: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    workers: int = 0,
    checkpoint_seconds: float = 300.0,
    progress: bool = True,
    part: tuple[int, int] | None = None,
    _stop_after_batches: int | None = None,
) -> NeuronStore:
    """Mines every selected layer's MLP neurons over ``corpus`` into a NeuronStore at ``out``.

    ``model``: local directory, hub id, ``minilm`` or a loaded Subject. ``corpus``: see CorpusSpec.
    ``batch_tokens``: model positions per forward pass. ``part``: ``(i, n)`` mines only the i-th of n
    contiguous ranges of the batches (what rank i of n mines under ``torchrun``); the n stores merge into
    the whole run's with :func:`merge_stores`. A finished store is returned as is when it was mined with
    these settings (model, dtype, layers, corpus, max_tokens, packing, batch size, mining config, part),
    and refused otherwise; an unfinished one resumes from its last checkpoint if that was written with
    the same settings. One process writes ``out`` at a time (``<out>.lock``); leftovers of a killed run
    (temp files, a finished run's checkpoint) are removed.
    """
    out = Path(out)
    if batch_tokens < 1:
        raise ConfigError(f"batch_tokens must be >= 1, got {batch_tokens}")
    cfg = config or MiningConfig()
    dist = _init_distributed(device)
    if part is not None:
        if dist.active:
            raise ConfigError("part cannot be combined with torchrun: every rank already mines its own part")
        if len(part) != 2 or not 0 <= part[0] < part[1]:
            raise ConfigError(f"part must be (i, n) with 0 <= i < n, got {part!r}")
        part = (int(part[0]), int(part[1]))
    spec = corpus if isinstance(corpus, CorpusSpec) else CorpusSpec(corpus)
    held = out / "ranks" / f"rank_{dist.rank}" if dist.active else out  # under torchrun each rank writes its own
    held.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(held):
        if (out / "manifest.json").exists() and not dist.active:
            return _finished(out, model, spec, layers, cfg, max_tokens=max_tokens, batch_tokens=batch_tokens,
                             seq_len=seq_len, packing=packing, dtype=dtype, part=part)
        return _mine(model, spec, out, dist, layers, cfg, max_tokens=max_tokens, batch_tokens=batch_tokens,
                     seq_len=seq_len, packing=packing, backend=backend, device=device, dtype=dtype, workers=workers,
                     checkpoint_seconds=checkpoint_seconds, progress=progress, part=part,
                     stop_after=_stop_after_batches)


def _finished(out: Path, model: str | Subject, spec: CorpusSpec, layers, cfg: MiningConfig, *, max_tokens,
              batch_tokens: int, seq_len, packing: str, dtype: str, part) -> NeuronStore:
    """The finished store at ``out`` if it was mined with these settings (a StoreError naming them if not)."""
    store = open_store(out)
    m = store.manifest
    given = model.model_id if isinstance(model, Subject) else str(model)
    diff = finished_differences(
        out, m, model=given, model_is_id=isinstance(model, Subject), dtype=dtype,
        layers=parse_layers(layers, int(m["n_layers_model"])), corpus=_corpus_key(spec), max_tokens=max_tokens,
        seq_len=seq_len, packing=packing, batch_tokens=batch_tokens, mining=cfg.to_dict(),
        part=list(part) if part else None)
    if diff:
        raise StoreError(f"{out} is a finished store mined with another configuration ({describe(diff)}); "
                         "rerun with its settings or use a new --out (nothing was overwritten)")
    clean_leftovers(out, finished=True)
    return store


def _mine(model: str | Subject, spec: CorpusSpec, out: Path, dist: _Dist, layers, cfg: MiningConfig, *,
          max_tokens, batch_tokens: int, seq_len, packing: PackMode, backend, device: str, dtype: str, workers: int,
          checkpoint_seconds: float, progress: bool, part, stop_after) -> NeuronStore:
    subject = model if isinstance(model, Subject) else load_subject(model, device=device, dtype=dtype)
    layer_list = parse_layers(layers, subject.n_layers)
    backend_name, miner = resolve_backend(backend, subject.device)
    work = out / "ranks" / f"rank_{dist.rank}" if dist.active else out
    if dist.rank == 0:
        clean_leftovers(out, finished=False)
    clean_leftovers(work, finished=False)

    if dist.rank == 0:
        tokens = _token_store(out, spec, subject, max_tokens, workers, progress)
    dist.barrier()
    if dist.rank != 0:
        tokens = TokenStore(out / "tokens")
    pk = make_packing(subject.tokenizer, subject.model.config, seq_len, packing)
    starts, lengths = pk.sequences(tokens)
    per_batch = max(1, batch_tokens // pk.seq_len)
    n_batches = -(-len(starts) // per_batch)
    shard, n_shards = part if part is not None else (dist.rank, dist.world)
    lo, hi = (shard * n_batches) // n_shards, ((shard + 1) * n_batches) // n_shards
    manifest = {
        "model": {"id": subject.model_id, "name": subject.model_id if isinstance(model, Subject) else str(model),
                  "type": subject.model_type, "dtype": dtype},
        "architecture": subject.model_type,
        "layers": layer_list,
        "n_neurons": subject.n_neurons,
        "n_layers_model": subject.n_layers,
        "mining": cfg.to_dict(),
        "packing": pk.to_dict(),
        # what packing's seq_len is when none is given: a rerun without --seq-len means this one
        "default_seq_len": make_packing(subject.tokenizer, subject.model.config, None, packing).seq_len,
        "batch_tokens": batch_tokens,
        "max_tokens": max_tokens,
        "corpus": tokens.meta["corpus"],
        "corpus_fingerprint": tokens.fingerprint,
        "corpus_tokens": tokens.n_tokens,
        "tokenizer": tokens.meta["tokenizer"],
        "token_store": os.path.relpath(out / "tokens", work),
    }
    if part is not None:
        manifest["part"] = list(part)
    stats, next_batch, seconds = resume(work, manifest, layer_list, subject.n_neurons, cfg, lo)
    _run_batches(subject, tokens, pk, starts, lengths, per_batch, range(next_batch, hi), layer_list, stats, miner,
                 cfg, work, manifest, seconds, checkpoint_seconds, progress, stop_after, backend_name)
    seq_lo, seq_hi = lo * per_batch, min(hi * per_batch, len(starts))
    seen = int(lengths[seq_lo:seq_hi].sum())
    final = {**manifest, "sequences": [[seq_lo, seq_hi]] if seq_hi > seq_lo else [], "tokens_seen": seen,
             "backend": backend_name, "seconds": round(seconds[0], 3)}
    write_stats(work, stats)
    write_manifest(work, final)
    drop_checkpoint(work)
    if dist.active:
        dist.barrier()
        if dist.rank == 0:
            from .merge import merge_stores

            merge_stores([out / "ranks" / f"rank_{r}" for r in range(dist.world)], out, token_store=out / "tokens")
            shutil.rmtree(out / "ranks", ignore_errors=True)
        dist.barrier()
    return open_store(out)


@torch.inference_mode()
def _run_batches(subject, tokens, pk, starts, lengths, per_batch, batches, layers, stats, miner, cfg, work,
                 manifest, seconds, checkpoint_seconds, progress, stop_after, backend_name) -> None:
    device = subject.device
    dev_stats = {layer: LayerStats(**{k: v.to(device) for k, v in st.to_tensors().items()})
                 for layer, st in stats.items()}
    n = subject.n_neurons
    ctx: dict[str, torch.Tensor] = {}
    deepest = layers[-1]

    def on_layer(layer: int, acts: torch.Tensor) -> None:
        flat = acts.reshape(-1, acts.shape[-1]).index_select(0, ctx["index"])
        miner(dev_stats[layer], flat, ctx["positions"], layer * n, cfg)
        if layer == deepest:
            raise _StopForward

    total = int(sum(lengths[b * per_batch : (b + 1) * per_batch].sum() for b in batches))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="tok", unit_scale=True, desc=f"mine[{backend_name}]", dynamic_ncols=True)
    last_ckpt = time.monotonic()
    t0 = time.monotonic()
    done = 0
    if backend_name == "triton":
        # The gated MLPs run the fused activation + mining kernel; other layers are mined from a hook.
        from ..models.fused import fused_mining

        mining = fused_mining(subject, layers, dev_stats, cfg, backend="triton", stop_after_deepest=True)
    else:
        mining = neuron_hooks(subject, layers, on_layer)
    extra = {"use_cache": False} if subject.spec.kind != "bert" else {}  # no KV cache built per batch
    try:
        with mining as fm:
            for b in batches:
                sl = slice(b * per_batch, (b + 1) * per_batch)
                ids, mask, index, positions = pk.batch(tokens, starts[sl], lengths[sl])
                ctx["index"], ctx["positions"] = index.to(device), positions.to(device)
                if fm is not None:
                    fm.set_batch(ctx["index"], ctx["positions"])
                with contextlib.suppress(_StopForward):
                    subject.model(input_ids=ids.to(device), attention_mask=mask.to(device), **extra)
                done += 1
                if bar is not None:
                    bar.update(int(lengths[sl].sum()))
                last = b == batches[-1]
                if not last and (time.monotonic() - last_ckpt >= checkpoint_seconds
                                 or (stop_after is not None and done >= stop_after)):
                    host = {layer: LayerStats(**{k: v.cpu() for k, v in st.to_tensors().items()})
                            for layer, st in dev_stats.items()}
                    checkpoint(work, host, manifest, b + 1, seconds[0] + time.monotonic() - t0)
                    last_ckpt = time.monotonic()
                    if stop_after is not None and done >= stop_after:
                        raise _Interrupted(f"stopped after {done} batches (test hook)")
    finally:
        if bar is not None:
            bar.close()
    seconds[0] += time.monotonic() - t0
    for layer, st in dev_stats.items():
        stats[layer] = LayerStats(**{k: v.cpu() for k, v in st.to_tensors().items()})
