"""Corpora: document readers, tokenization, the token store and packing into model inputs."""

from .readers import CorpusSpec, SkipCounts, iter_documents
from .tokenize import build_token_store, tokenizer_id
from .tokenstore import TokenStore

__all__ = ["CorpusSpec", "SkipCounts", "TokenStore", "build_token_store", "iter_documents", "tokenizer_id"]
