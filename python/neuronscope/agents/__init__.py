"""The explainers: the NeuronScope agent loop (offline or LLM) and the single-pass baseline, behind one interface.

``base`` (Explainer, AgentConfig, AgentResult), ``explainers`` (the four explainers and what they share),
``run`` (the ``explain`` stage), ``offline`` / ``proposals`` / ``workspace`` (the offline loop),
``llm_agents`` (the LLM roles), ``baseline`` (offline single-pass), ``feedback`` (features and probes),
``concepts`` and ``render`` (labels and descriptions).
"""

from .base import AgentConfig, AgentResult, Explainer, OfflineConfig
from .baseline import single_pass
from .explainers import METHODS, ExplainContext, make_explainer
from .offline import OfflineNeuronScope
from .run import explain, parse_neurons

__all__ = ["METHODS", "AgentConfig", "AgentResult", "ExplainContext", "Explainer", "OfflineConfig",
           "OfflineNeuronScope", "explain", "make_explainer", "parse_neurons", "single_pass"]
