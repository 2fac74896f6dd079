"""neuronscope: explain what every neuron of a language model does, at corpus scale."""

from __future__ import annotations

from .corpus import CorpusSpec, TokenStore
from .errors import ConfigError, CorpusError, ModelError, NeuronscopeError, StoreError, UnsupportedModelError
from .mining import LayerStats, MiningConfig
from .mining.merge import merge_stores
from .mining.run import mine
from .models import Subject, load_subject
from .records import Exemplar, NeuronRecord
from .store import NeuronStore, open_store

__version__ = "0.1.0"

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
