"""The explainers: the NeuronScope agent loop (offline or LLM) and the single-pass baseline."""

from .explain import METHODS, explain, parse_neurons
from .offline import AgentResult, OfflineConfig, OfflineNeuronScope, single_pass

__all__ = ["METHODS", "AgentResult", "OfflineConfig", "OfflineNeuronScope", "explain", "parse_neurons",
           "single_pass"]
