"""Streaming, multi-process tokenization of a corpus into a token store.

User text is only ever text: a document holding ``[CLS]`` or ``<|endoftext|>`` gets the ids of those
characters, never the special token's id (the tokenizer's ``encode_special_tokens`` is on), so the
special tokens in a packed sequence are exactly the ones packing adds.

Work is bounded whatever the corpus: a document longer than ``PIECE_CHARS`` characters is cut into pieces
(before a whitespace where the second half of the piece has one) that are tokenized separately and
written back to back as one document; at most ``2 * workers`` chunks of pieces are in flight, so reading
stops soon after ``max_tokens`` tokens are in hand. A cut can change the tokens right at it (a word
split where no whitespace was near, or SentencePiece's word-start mark) but never elsewhere.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import CorpusError, ModelError
from .readers import CorpusSpec, SkipCounts, iter_documents
from .tokenstore import TokenStore, TokenStoreWriter

PIECE_CHARS = 1 << 16
"""Longest text (characters) given to the tokenizer in one piece."""
CHUNK_CHARS = 1 << 20
"""Most characters per ``encode_batch`` call (fewer when ``max_tokens`` is small)."""

_worker_tokenizer = None


def _backend(tokenizer: object):
    """The fast tokenizer's Rust backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError("tokenization needs a fast (Rust) tokenizer; this model only has a slow one")
    return backend


def _load_backend(spec: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(spec)
    # Saved tokenizers often carry truncation (e.g. 128 or 512 tokens): never cut documents here.
    tok.no_truncation()
    tok.no_padding()
    tok.encode_special_tokens = True  # "[SEP]" in a document is five characters, not the separator
    return tok


def _init_worker(spec: str) -> None:
    global _worker_tokenizer
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = _load_backend(spec)


def _encode(texts: list[str]) -> list[np.ndarray]:
    encodings = _worker_tokenizer.encode_batch(texts, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.uint32) for e in encodings]


def split_text(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` in pieces of at most ``size`` characters, each cut before the last whitespace of its second half
    (at ``size`` when there is none); the pieces join back to ``text``."""
    start, n = 0, len(text)
    while n - start > size:
        end = start + size
        cut = max(text.rfind(c, start + size // 2, end) for c in " \n\t")
        cut = cut if cut > start else end
        yield text[start:cut]
        start = cut
    yield text[start:]


def _pieces(docs: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """``(piece, is the document's last piece)`` of every document."""
    for doc in docs:
        if len(doc) <= PIECE_CHARS:
            yield doc, True
            continue
        pieces = split_text(doc, PIECE_CHARS)
        prev = next(pieces)
        for piece in pieces:
            yield prev, False
            prev = piece
        yield prev, True


def _chunks(pieces: Iterator[tuple[str, bool]], max_pieces: int, max_chars: int) -> Iterator[list[tuple[str, bool]]]:
    """Consecutive pieces, at most ``max_pieces`` and (but for a single piece) ``max_chars`` characters each."""
    chunk: list[tuple[str, bool]] = []
    chars = 0
    for piece in pieces:
        if chunk and (len(chunk) >= max_pieces or chars + len(piece[0]) > max_chars):
            yield chunk
            chunk, chars = [], 0
        chunk.append(piece)
        chars += len(piece[0])
    if chunk:
        yield chunk


def _encoded(chunks: Iterator[list[tuple[str, bool]]], pool, depth: int) -> Iterator[list[tuple[np.ndarray, bool]]]:
    """Each chunk's ``(ids, last)``, in order, with at most ``depth`` chunks submitted ahead.

    (``Pool.imap`` would drain the whole corpus into its task queue before the first result is used.)
    """
    if pool is None:
        for chunk in chunks:
            yield list(zip(_encode([t for t, _ in chunk]), [last for _, last in chunk], strict=True))
        return
    pending: deque = deque()
    for chunk in itertools.chain(chunks, [None]):
        if chunk is not None:
            pending.append(([last for _, last in chunk], pool.apply_async(_encode, ([t for t, _ in chunk],))))
        while pending and (chunk is None or len(pending) > depth):
            lasts, job = pending.popleft()
            yield list(zip(job.get(), lasts, strict=True))


def tokenizer_id(tokenizer: object) -> dict:
    """Identity of a tokenizer, recorded in stores so mismatched runs are refused.

    It hashes only what decides the ids of a document: the model (vocabulary, merges and their options),
    the normalizer, the pre-tokenizer and the added tokens with their flags. Truncation, padding, the
    post-processor (packing records its special tokens itself), the decoder and the tokenizer's path do
    not enter, so the same tokenizer gets the same id however it was loaded or configured.
    """
    backend = _backend(tokenizer)
    h = hashlib.sha256(backend.model.__getstate__())
    for part in (backend.normalizer, backend.pre_tokenizer):
        h.update(b"\0" + (part.__getstate__() if part is not None else b"null"))
    added = sorted(backend.get_added_tokens_decoder().items())
    h.update(repr([(i, t.content, t.single_word, t.lstrip, t.rstrip, t.normalized, t.special)
                   for i, t in added]).encode())
    return {"vocab_size": len(tokenizer), "sha256": h.hexdigest()[:16]}


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
    says so) and reads no further than the chunks already in flight; ``workers`` processes encode chunks
    of up to ``chunk_docs`` pieces (0 = up to 4, by CPU). Raises CorpusError when no document yields a
    token. The store appears only when complete.
    """
    if max_tokens is not None and max_tokens < 1:
        raise CorpusError(f"max_tokens must be >= 1, got {max_tokens}")
    backend = _backend(tokenizer).to_str()
    skips = SkipCounts()
    n_workers = workers or min(4, os.cpu_count() or 1)
    depth = 2 * n_workers
    # Text in flight stays near 8 characters per wanted token (2x English), so a small max_tokens reads little.
    max_chars = CHUNK_CHARS if max_tokens is None else min(CHUNK_CHARS, max(4096, 8 * max_tokens // depth))
    chunks = _chunks(_pieces(iter_documents(spec, skips)), chunk_docs, max_chars)
    writer = TokenStoreWriter(out)
    cut = False
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=max_tokens, unit="tok", desc="tokenize", dynamic_ncols=True)
    try:
        if n_workers > 1:
            pool = mp.get_context("fork").Pool(n_workers, initializer=_init_worker, initargs=(backend,))
        else:
            pool = None
            _init_worker(backend)
        try:
            for batch in _encoded(chunks, pool, depth):
                for ids, last in batch:
                    if max_tokens is not None and writer.n_tokens + len(ids) >= max_tokens:
                        ids = ids[: max_tokens - writer.n_tokens]
                        cut = True
                    writer.extend(ids)
                    if bar is not None:
                        bar.update(len(ids))
                    if last or cut:
                        if writer.open_doc_tokens:
                            writer.end_doc()
                        else:
                            skips.add("empty")
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
            "tokenizer_name": str(getattr(tokenizer, "name_or_path", "")),
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
