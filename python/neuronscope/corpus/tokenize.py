"""Streaming, multi-process tokenization of a corpus into a token store."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import CorpusError, ModelError
from .readers import CorpusSpec, SkipCounts, iter_documents
from .tokenstore import TokenStore, TokenStoreWriter

_worker_tokenizer = None


def _backend_json(tokenizer: object) -> str:
    """The fast tokenizer's serialized Rust backend (what each worker process rebuilds)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError("tokenization needs a fast (Rust) tokenizer; this model only has a slow one")
    return backend.to_str()


def _load_backend(spec: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(spec)
    # Saved tokenizers often carry truncation (e.g. 128 or 512 tokens): never cut documents here.
    tok.no_truncation()
    tok.no_padding()
    return tok


def _init_worker(spec: str) -> None:
    global _worker_tokenizer
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = _load_backend(spec)


def _encode(docs: list[str]) -> list[np.ndarray]:
    encodings = _worker_tokenizer.encode_batch(docs, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.uint32) for e in encodings]


def _chunks(docs: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(docs, size)):
        yield chunk


def tokenizer_id(tokenizer: object) -> dict:
    """Identity of a tokenizer, recorded in stores so mismatched runs are refused."""
    spec = _backend_json(tokenizer)
    return {
        "name": str(getattr(tokenizer, "name_or_path", "")),
        "vocab_size": len(tokenizer),
        "sha256": hashlib.sha256(spec.encode()).hexdigest()[:16],
    }


def build_token_store(
    spec: CorpusSpec,
    tokenizer: object,
    out: str | Path,
    *,
    max_tokens: int | None = None,
    workers: int = 0,
    chunk_docs: int = 256,
    progress: bool = False,
) -> tuple[TokenStore, SkipCounts]:
    """Tokenizes every document of ``spec`` (no special tokens) into a token store at ``out``.

    ``max_tokens`` stops after that many tokens (the last document is cut at the limit, and the meta
    says so); ``workers`` processes encode chunks of ``chunk_docs`` documents (0 = up to 4, by CPU).
    Raises CorpusError when no document yields a token. The store appears only when complete.
    """
    if max_tokens is not None and max_tokens < 1:
        raise CorpusError(f"max_tokens must be >= 1, got {max_tokens}")
    backend = _backend_json(tokenizer)
    skips = SkipCounts()
    docs = iter_documents(spec, skips)
    n_workers = workers or min(4, os.cpu_count() or 1)
    writer = TokenStoreWriter(out)
    cut = False
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=max_tokens, unit="tok", desc="tokenize", dynamic_ncols=True)
    try:
        if n_workers > 1:
            pool = mp.get_context("fork").Pool(n_workers, initializer=_init_worker, initargs=(backend,))
            batches = pool.imap(_encode, _chunks(docs, chunk_docs))
        else:
            pool = None
            _init_worker(backend)
            batches = map(_encode, _chunks(docs, chunk_docs))
        try:
            for batch in batches:
                for ids in batch:
                    if len(ids) == 0:
                        skips.add("empty")
                        continue
                    if max_tokens is not None and writer.n_tokens + len(ids) >= max_tokens:
                        ids = ids[: max_tokens - writer.n_tokens]
                        cut = True
                    writer.add(ids)
                    if bar is not None:
                        bar.update(len(ids))
                    if cut:
                        break
                if cut:
                    break
        finally:
            if pool is not None:
                pool.terminate()
        if writer.n_tokens == 0:
            raise CorpusError(f"corpus {spec.source!r} holds no usable document ({skips})")
        store = writer.finish({
            "corpus": {"source": spec.source, "text_field": spec.text_field, "doc_split": spec.doc_split,
                       "split": spec.split},
            "tokenizer": tokenizer_id(tokenizer),
            "max_tokens": max_tokens,
            "cut_at_max_tokens": cut,
            "skipped": skips.as_dict(),
        })
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return store, skips
