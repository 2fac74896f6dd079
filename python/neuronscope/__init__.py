"""neuronscope: explain what every neuron of a language model does, at corpus scale.

The public names are re-exported lazily: ``import neuronscope`` (and so ``neuronscope --help``) loads no
torch, transformers or numpy; the first use of a name imports the module that defines it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, CorpusError, ModelError, NeuronscopeError, StoreError, UnsupportedModelError

if TYPE_CHECKING:
    from .corpus import CorpusSpec, TokenStore
    from .mining import LayerStats, MiningConfig
    from .mining.merge import merge_stores
    from .mining.run import mine
    from .models import Subject, load_subject
    from .records import Exemplar, NeuronRecord
    from .store import NeuronStore, open_store

__version__ = "0.1.0"

_LAZY = {
    "CorpusSpec": ".corpus",
    "TokenStore": ".corpus",
    "LayerStats": ".mining",
    "MiningConfig": ".mining",
    "merge_stores": ".mining.merge",
    "mine": ".mining.run",
    "Subject": ".models",
    "load_subject": ".models",
    "Exemplar": ".records",
    "NeuronRecord": ".records",
    "NeuronStore": ".store",
    "open_store": ".store",
}

__all__ = [
    "ConfigError",
    "CorpusError",
    "CorpusSpec",
    "Exemplar",
    "LayerStats",
    "MiningConfig",
    "ModelError",
    "NeuronRecord",
    "NeuronStore",
    "NeuronscopeError",
    "StoreError",
    "Subject",
    "TokenStore",
    "UnsupportedModelError",
    "__version__",
    "load_subject",
    "merge_stores",
    "mine",
    "open_store",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
