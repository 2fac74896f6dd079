"""The token store: the tokenized corpus as one uint32 memmap plus document offsets.

Layout of the directory::

    tokens.bin   uint32[n_tokens]        every document's tokens, back to back (no special tokens)
    docs.npy     int64[n_docs + 1]       document d is tokens[docs[d]:docs[d+1]]
    meta.json    n_tokens, n_docs, tokenizer, fingerprint, skipped inputs, corpus spec

A token's *global position* is its index in ``tokens.bin``; every statistic in a NeuronStore refers
to tokens by it, so exemplars are shown in context without re-tokenizing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..io import atomic_dir, write_json

FORMAT = 1


def _doc_offsets(path: Path) -> np.ndarray:
    """``docs.npy``: int64 ``(n_docs + 1,)`` non-decreasing document offsets, or a StoreError that says so."""
    fix = "restore the store from a copy, or mine again into a new --out"
    try:
        offsets = np.load(path / "docs.npy", allow_pickle=False)
    except FileNotFoundError:
        raise StoreError(f"corrupt token store {path}: docs.npy is missing; {fix}") from None
    except (OSError, ValueError, EOFError) as e:
        raise StoreError(f"corrupt token store {path}: docs.npy is not the document-offset array neuronscope writes "
                         f"({type(e).__name__}); {fix}") from None
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) < 1 or (np.diff(offsets) < 0).any():
        raise StoreError(f"corrupt token store {path}: docs.npy holds a {offsets.dtype} array of shape "
                         f"{offsets.shape}, not non-decreasing integer document offsets; {fix}")
    return offsets


class TokenStore:
    """Read access to a token store directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.exists():
            raise StoreError(f"{self.path} is not a token store (no meta.json)")
        self.doc_offsets = _doc_offsets(self.path)
        try:
            self.meta = json.loads(meta_file.read_text())
            n = int(self.meta["n_tokens"])
            self.tokens = (
                np.memmap(self.path / "tokens.bin", dtype=np.uint32, mode="r", shape=(n,))
                if n else np.zeros(0, np.uint32)
            )
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            raise StoreError(f"corrupt token store {self.path}: {e}") from e
        if (self.path / "tokens.bin").stat().st_size != 4 * n:
            raise StoreError(f"corrupt token store {self.path}: tokens.bin does not hold {n} tokens")
        if self.doc_offsets[-1] != n or self.doc_offsets[0] != 0:
            raise StoreError(f"corrupt token store {self.path}: document offsets do not span the tokens")

    def read(self, start: int, n: int) -> np.ndarray:
        """Token ids ``[start, start + n)``, uint32 ``(n,)`` (read-only), read with ``pread``.

        Mining and scans read through this rather than slicing :attr:`tokens`: every page of a memory map
        that is touched stays resident, so streaming 10⁹ tokens through the map would add its 4 GB to the
        process's RSS; a read leaves nothing mapped.
        """
        if n <= 0:
            return np.zeros(0, np.uint32)
        if start < 0 or start + n > self.n_tokens:
            raise StoreError(f"{self.path}: tokens [{start}, {start + n}) are outside the {self.n_tokens} stored")
        pid = os.getpid()
        if getattr(self, "_fd", None) is None or self._fd_pid != pid:  # a forked worker opens its own
            self._fd, self._fd_pid = os.open(self.path / "tokens.bin", os.O_RDONLY), pid
        buf = os.pread(self._fd, 4 * n, 4 * start)
        if len(buf) != 4 * n:
            raise StoreError(f"{self.path}: tokens.bin ended early (read {len(buf) // 4} of {n} tokens at {start})")
        return np.frombuffer(buf, dtype=np.uint32)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None and getattr(self, "_fd_pid", None) == os.getpid():
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def n_docs(self) -> int:
        return int(self.meta["n_docs"])

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    def doc_of(self, positions: np.ndarray | int) -> np.ndarray | int:
        """Document index of global token positions."""
        return np.searchsorted(self.doc_offsets, positions, side="right") - 1

    def window(self, position: int, before: int, after: int) -> tuple[int, int]:
        """``[start, stop)`` of the context around ``position``, clipped to its document."""
        if not 0 <= position < self.n_tokens:
            raise StoreError(f"token position {position} outside the token store (0..{self.n_tokens - 1})")
        d = int(self.doc_of(position))
        lo, hi = int(self.doc_offsets[d]), int(self.doc_offsets[d + 1])
        return max(lo, position - before), min(hi, position + after + 1)


class TokenStoreWriter:
    """Appends documents' token ids and finalizes the store atomically (all or nothing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ctx = atomic_dir(self.path)
        self._tmp = self._ctx.__enter__()
        self._file = open(self._tmp / "tokens.bin", "wb")  # noqa: SIM115 (closed in finish/abort)
        self._offsets = [0]
        self._hash = hashlib.sha256()

        self._written = 0

    @property
    def n_tokens(self) -> int:
        """Tokens written so far, those of the open document included."""
        return self._written

    @property
    def open_doc_tokens(self) -> int:
        """Tokens of the document being written (not yet ended)."""
        return self._written - self._offsets[-1]

    def extend(self, ids: np.ndarray) -> None:
        """Appends token ids (``(L,)``, L >= 0) to the open document (a long one arrives in pieces)."""
        arr = np.ascontiguousarray(ids, dtype=np.uint32)
        self._file.write(arr.tobytes())
        self._hash.update(arr.tobytes())
        self._written += len(arr)

    def end_doc(self) -> None:
        """Ends the open document (which must hold a token)."""
        if not self.open_doc_tokens:
            raise ValueError("a document needs at least one token")
        self._offsets.append(self._written)

    def add(self, ids: np.ndarray) -> None:
        """Appends one whole document's token ids (``(L,)``, L >= 1)."""
        self.extend(ids)
        self.end_doc()

    def finish(self, meta: dict) -> TokenStore:
        if self.open_doc_tokens:
            self.end_doc()
        self._file.close()
        offsets = np.asarray(self._offsets, dtype=np.int64)
        self._hash.update(offsets.tobytes())
        np.save(self._tmp / "docs.npy", offsets)
        meta = {
            "format": FORMAT,
            **meta,
            "n_tokens": int(offsets[-1]),
            "n_docs": len(offsets) - 1,
            "fingerprint": self._hash.hexdigest()[:32],
        }
        write_json(self._tmp / "meta.json", meta)
        self._ctx.__exit__(None, None, None)
        return TokenStore(self.path)

    def abort(self) -> None:
        self._file.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
