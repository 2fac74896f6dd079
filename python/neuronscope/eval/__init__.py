"""Ground truth and evaluation: planted polysemantic neurons, real-neuron comparison, metrics."""

from .metrics import match_modes, mean_ci, wilcoxon
from .planted import PlantedNeuron, TrueMode, build_planted_store, read_ground_truth, standard_suite
from .run import evaluate, markdown

__all__ = ["PlantedNeuron", "TrueMode", "build_planted_store", "evaluate", "markdown", "match_modes", "mean_ci",
           "read_ground_truth", "standard_suite", "wilcoxon"]
