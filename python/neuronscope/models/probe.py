"""Running arbitrary text through the subject model: chosen neurons' activations on each token."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .hooks import layer_activations
from .loading import Subject


@torch.inference_mode()
def text_activations(subject: Subject, texts: Sequence[str], layer: int, neurons: Sequence[int],
                     prefix: Sequence[int] = (), suffix: Sequence[int] = (), max_tokens: int = 256,
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each text: ``(ids (L,) int64, acts (L, M) float32)`` of its tokens (special tokens excluded).

    The text is tokenized without special tokens, cut to ``max_tokens``, wrapped in ``prefix``/``suffix``
    (the packing's special tokens, so the model sees what it saw while mining) and run up to ``layer``.
    """
    tok = subject.tokenizer
    # User text is text: "[CLS]" typed in a probe is characters, never the special id.
    docs = [np.asarray(tok(t, add_special_tokens=False, split_special_tokens=True)["input_ids"][:max_tokens],
                       dtype=np.int64) for t in texts]
    out: list[tuple[np.ndarray, np.ndarray]] = [(d, np.zeros((len(d), len(neurons)), np.float32)) for d in docs]
    live = [i for i, d in enumerate(docs) if len(d)]
    if not live:
        return out
    p, s = len(prefix), len(suffix)
    width = max(len(docs[i]) for i in live) + p + s
    pad = getattr(tok, "pad_token_id", None) or 0
    ids = np.full((len(live), width), pad, dtype=np.int64)
    mask = np.zeros((len(live), width), dtype=np.int64)
    for row, i in enumerate(live):
        n = len(docs[i])
        ids[row, :p] = prefix
        ids[row, p : p + n] = docs[i]
        ids[row, p + n : p + n + s] = suffix
        mask[row, : p + n + s] = 1
    dev = subject.device
    acts = layer_activations(subject, torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev), [layer])[layer]
    sel = torch.as_tensor(list(neurons), device=acts.device)
    for row, i in enumerate(live):
        n = len(docs[i])
        out[i] = (docs[i], acts[row, p : p + n][:, sel].float().cpu().numpy())
    return out
