"""Interop with other explainers' files: OpenAI neuron-explainer records and explanations, delphi outputs."""

from .delphi import detection_records, export_delphi, latent_name, read_delphi_explanations, simulation_records
from .openai import OpenAIRecords, export_openai, read_openai_explanations, window_scores

__all__ = ["OpenAIRecords", "detection_records", "export_delphi", "export_openai", "latent_name",
           "read_delphi_explanations", "read_openai_explanations", "simulation_records", "window_scores"]
