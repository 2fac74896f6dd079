"""Interop with other explainers' files: OpenAI neuron-explainer records and explanations, delphi outputs."""

from .delphi import export_delphi, latent_name, read_delphi_explanations
from .openai import OpenAIRecords, export_openai, read_openai_explanations, window_scores

__all__ = ["OpenAIRecords", "export_delphi", "export_openai", "latent_name", "read_delphi_explanations",
           "read_openai_explanations", "window_scores"]
