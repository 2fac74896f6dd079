"""Subject models: loading, and where each architecture's MLP neurons live."""

from .loading import ALIASES, Subject, load_subject, resolve_model_path, wrap_subject
from .registry import SUPPORTED, ArchSpec, arch_spec, base_model, blocks, down_projection

__all__ = [
    "ALIASES",
    "SUPPORTED",
    "ArchSpec",
    "Subject",
    "arch_spec",
    "base_model",
    "blocks",
    "down_projection",
    "load_subject",
    "resolve_model_path",
    "wrap_subject",
]
