"""Ground truth and evaluation: planted polysemantic neurons, real-neuron comparison, metrics."""

from .definition import PlantedNeuron, TokenStream, TrueMode, definition, mode_values
from .families import open_families
from .metrics import POLYSEMANTIC_RULE, count_distribution, is_polysemantic, match_modes, mean_ci, paired, wilcoxon
from .planted import build_planted_store, grammar_suite, read_ground_truth, standard_suite
from .run import evaluate
from .tables import markdown

__all__ = ["POLYSEMANTIC_RULE", "PlantedNeuron", "TokenStream", "TrueMode", "build_planted_store",
           "count_distribution", "definition", "evaluate", "grammar_suite", "is_polysemantic", "markdown",
           "match_modes", "mean_ci", "mode_values", "open_families", "paired", "read_ground_truth", "standard_suite",
           "wilcoxon"]
