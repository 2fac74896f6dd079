"""Activation mining: per-neuron streaming statistics over a corpus."""

from .reference import merge_stats, mine_ref
from .spec import MiningConfig, bin_strata, hist_edges
from .stats import LayerStats

__all__ = ["LayerStats", "MiningConfig", "bin_strata", "hist_edges", "merge_stats", "mine_ref"]
