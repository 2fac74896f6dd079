"""A vocabulary as the condition compiler sees it: each token id's display piece and comparison key.

Two sources: a Hugging Face tokenizer (every id of the subject model), or a list of token strings
(OpenAI ``NeuronRecord`` files hold decoded strings, not ids; each distinct string becomes an id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .model import normalise


@dataclass
class Vocab:
    """``pieces[i]``: the text id i contributes (``"".join`` of a window's pieces is readable text)."""

    pieces: list[str]
    name: str = ""
    _keys: dict[bool, list[str]] = field(default_factory=dict, repr=False)
    _index: dict[str, int] | None = field(default=None, repr=False)
    _by_key: dict[bool, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.pieces)

    def keys(self, case_sensitive: bool = False) -> list[str]:
        """Normalised comparison key of every id (see :func:`normalise`), cached."""
        if case_sensitive not in self._keys:
            self._keys[case_sensitive] = [normalise(p, case_sensitive) for p in self.pieces]
        return self._keys[case_sensitive]

    def ids_in(self, tokens: Iterable[str], case_sensitive: bool = False) -> np.ndarray:
        """Sorted int64 ids whose key is the key of one of ``tokens`` (an inverted index: O(len(tokens)))."""
        index = self._by_key.get(case_sensitive)
        if index is None:
            keys = np.asarray(self.keys(case_sensitive), dtype=object)
            order = np.argsort(keys, kind="stable")
            uniq, starts = np.unique(keys[order], return_index=True)
            bounds = np.append(starts, len(order))
            index = self._by_key[case_sensitive] = {
                k: order[bounds[i] : bounds[i + 1]].astype(np.int64) for i, k in enumerate(uniq.tolist())}
        wanted = {normalise(t, case_sensitive) for t in tokens}
        wanted.discard("")
        hits = [index[k] for k in wanted if k in index]
        return np.unique(np.concatenate(hits)) if hits else np.zeros(0, dtype=np.int64)

    def mask_in(self, tokens: Iterable[str], case_sensitive: bool = False) -> np.ndarray:
        """(V,) bool: ids whose key is the key of one of ``tokens``."""
        mask = np.zeros(len(self), dtype=bool)
        mask[self.ids_in(tokens, case_sensitive)] = True
        return mask

    @classmethod
    def from_tokenizer(cls, tokenizer: object) -> Vocab:
        """Every id of a Hugging Face tokenizer, with the same pieces the store's exemplars show."""
        from ..records import display_tokens

        n = len(tokenizer)  # type: ignore[arg-type]
        return cls(pieces=display_tokens(tokenizer, list(range(n))), name=getattr(tokenizer, "name_or_path", ""))

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> Vocab:
        """Distinct token strings in first-seen order (ids are positions in that order)."""
        seen: dict[str, int] = {}
        for s in strings:
            if s not in seen:
                seen[s] = len(seen)
        v = cls(pieces=list(seen))
        v._index = seen
        return v

    def encode(self, strings: Sequence[str]) -> np.ndarray:
        """(T,) int64 ids of token strings, for a vocabulary built by :meth:`from_strings` (new strings are added)."""
        if self._index is None:
            self._index = {}
            for i, p in enumerate(self.pieces):
                self._index.setdefault(p, i)
        out = np.empty(len(strings), dtype=np.int64)
        for i, s in enumerate(strings):
            j = self._index.get(s)
            if j is None:
                j = self._index[s] = len(self.pieces)
                self.pieces.append(s)
                self._keys.clear()
                self._by_key.clear()
            out[i] = j
        return out
