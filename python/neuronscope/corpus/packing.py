"""Packing the token store into fixed-length model inputs.

``stream``: the token stream is cut into consecutive chunks, each wrapped in the tokenizer's special
tokens (e.g. ``[CLS] … [SEP]`` for BERT, ``<s> …`` for Llama); documents share sequences and long ones
continue in the next sequence, so no token is dropped. ``doc``: every sequence holds tokens of one
document only (long documents still continue over several sequences), padding the rest.
Special and padding tokens are never mined: only the corpus tokens map to global positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError
from .tokenstore import TokenStore

PackMode = Literal["stream", "doc"]


def special_tokens(tokenizer: object) -> tuple[list[int], list[int]]:
    """The (prefix, suffix) special-token ids the tokenizer wraps around a sequence."""
    probe = "hello world"
    inner = tokenizer(probe, add_special_tokens=False)["input_ids"]
    outer = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(outer) - len(inner) + 1):
        if outer[i : i + len(inner)] == inner:
            return list(outer[:i]), list(outer[i + len(inner) :])
    return [], []


@dataclass
class Packing:
    """How global token positions map onto sequences of ``seq_len`` model positions."""

    seq_len: int
    prefix: list[int]
    suffix: list[int]
    pad_id: int
    mode: PackMode = "stream"

    def __post_init__(self) -> None:
        if self.mode not in ("stream", "doc"):
            raise ConfigError(f"packing must be 'stream' or 'doc', got {self.mode!r}")
        if self.chunk < 1:
            raise ConfigError(
                f"seq_len {self.seq_len} leaves no room for tokens after "
                f"{len(self.prefix) + len(self.suffix)} special tokens"
            )

    @property
    def chunk(self) -> int:
        """Corpus tokens per sequence."""
        return self.seq_len - len(self.prefix) - len(self.suffix)

    def to_dict(self) -> dict:
        return asdict(self)

    def sequences(self, tokens: TokenStore) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, lengths)``, int64 ``(n_seq,)``: each sequence's first global position and length."""
        n, c = tokens.n_tokens, self.chunk
        if self.mode == "stream":
            starts = np.arange(0, n, c, dtype=np.int64)
            return starts, np.minimum(c, n - starts)
        lo, hi = tokens.doc_offsets[:-1], tokens.doc_offsets[1:]
        per_doc = -(-(hi - lo) // c)
        first = np.repeat(np.cumsum(per_doc) - per_doc, per_doc)  # index of each doc's first chunk
        starts = np.repeat(lo, per_doc) + c * (np.arange(per_doc.sum()) - first)
        ends = np.repeat(hi, per_doc)
        return starts.astype(np.int64), np.minimum(c, ends - starts).astype(np.int64)

    def batch(
        self, tokens: TokenStore, starts: np.ndarray, lengths: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model inputs for the given sequences.

        Returns ``input_ids (B, L)`` int64, ``attention_mask (B, L)`` int64, ``index (T,)`` int64 — flat
        indices into ``B * L`` of the corpus tokens — and ``positions (T,)`` int64, their global positions.
        """
        b, width = len(starts), int(lengths.max()) + len(self.prefix) + len(self.suffix)
        ids = np.full((b, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((b, width), dtype=np.int64)
        index, positions = [], []
        p = len(self.prefix)
        for row, (s, n) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
            ids[row, :p] = self.prefix
            ids[row, p : p + n] = tokens.read(s, n)  # not a memmap slice: nothing stays resident
            ids[row, p + n : p + n + len(self.suffix)] = self.suffix
            mask[row, : p + n + len(self.suffix)] = 1
            index.append(row * width + p + np.arange(n))
            positions.append(s + np.arange(n))
        return (
            torch.from_numpy(ids),
            torch.from_numpy(mask),
            torch.from_numpy(np.concatenate(index)),
            torch.from_numpy(np.concatenate(positions)),
        )


def make_packing(tokenizer: object, model_config: object, seq_len: int | None, mode: PackMode) -> Packing:
    """A Packing for this tokenizer; ``seq_len`` defaults to 512 capped by the model's positions."""
    max_pos = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
    if seq_len is None:
        seq_len = min(512, max_pos or 512)
    if max_pos is not None and seq_len > max_pos:
        raise ConfigError(f"seq_len {seq_len} exceeds the model's {max_pos} positions")
    prefix, suffix = special_tokens(tokenizer)
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return Packing(seq_len=seq_len, prefix=prefix, suffix=suffix, pad_id=int(pad), mode=mode)
