"""neuronscope: explain what every neuron of a language model does, at corpus scale."""

from __future__ import annotations

from .errors import ConfigError, CorpusError, ModelError, NeuronscopeError, StoreError, UnsupportedModelError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CorpusError",
    "ModelError",
    "NeuronscopeError",
    "StoreError",
    "UnsupportedModelError",
    "__version__",
]
