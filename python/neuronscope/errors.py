"""One exception family for the whole package: every error a user can cause is a NeuronscopeError."""

from __future__ import annotations


class NeuronscopeError(Exception):
    """Base class of every error neuronscope raises on purpose."""


class ModelError(NeuronscopeError):
    """A model cannot be loaded, or its MLP neurons cannot be located."""


class UnsupportedModelError(ModelError):
    """The model's architecture is not one neuronscope knows how to hook."""


class CorpusError(NeuronscopeError):
    """A corpus cannot be read, or it holds no usable document."""


class StoreError(NeuronscopeError):
    """A NeuronStore (or token store) is missing, corrupt or incompatible."""


class ConfigError(NeuronscopeError, ValueError):
    """An argument or option is out of range or malformed."""


class ExplanationError(NeuronscopeError, ValueError):
    """An explanation, mode or condition is malformed (bad JSON, unknown kind, invalid regex, ...)."""


class LLMError(NeuronscopeError):
    """An LLM server failed, timed out or answered something unusable after the allowed retries."""
