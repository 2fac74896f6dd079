"""GGUF files as subject models: de-quantised once by transformers into a cached safetensors directory.

transformers reads GGUF (``from_pretrained(dir, gguf_file=...)``, with the ``gguf`` package) but de-quantising
takes a minute or more on a small CPU, so the result is written once — float32 weights as safetensors, the
config and the fast tokenizer — under ``<cache>/models/<name>-<sha256[:16]>`` and loaded from there after.
The directory appears atomically (written aside, then renamed), so an interrupted conversion leaves nothing
half-written behind. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelError
from .packaged import cache_dir, packaged, sha256_file

_DONE = "neuronscope-converted.json"


def is_gguf_name(name: str) -> bool:
    """True for a built-in GGUF name or a path ending in ``.gguf``."""
    return packaged(name) is not None or name.lower().endswith(".gguf")


def converted_dir(name: str) -> Path:
    """The HF directory for a built-in GGUF name or a ``.gguf`` path, converting it on first use."""
    spec = packaged(name)
    if spec is not None:
        from .packaged import gguf_path

        gguf, digest, label = gguf_path(name), spec.sha256, spec.name
    else:
        gguf = Path(name).expanduser()
        if not gguf.is_file():
            raise ModelError(f"GGUF file {name!r} does not exist")
        digest, label = sha256_file(gguf), gguf.stem
    target = cache_dir() / "models" / f"{label}-{digest[:16]}"
    if (target / _DONE).is_file():
        return target
    _convert(gguf, target, {"source": str(gguf), "sha256": digest, "name": label})
    return target


def _convert(gguf: Path, target: Path, info: dict) -> None:
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it; say so before its longer message)
    except ImportError:
        raise ModelError("loading a GGUF model needs the gguf package (pip install gguf, or "
                         "bash scripts/install.sh --models)") from None
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # transformers raises ValueError/OSError/KeyError for unreadable or unknown GGUF
        raise ModelError(f"transformers cannot read the GGUF file {gguf}: {e}") from e
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    try:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights written are plain float32
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if getattr(config, "tie_word_embeddings", False):
            weights.pop("lm_head.weight", None)  # the same tensor as the embeddings, re-tied on load
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / _DONE).write_text(json.dumps({**info, "model_type": config.model_type}))
        if target.exists():  # a concurrent conversion finished first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
