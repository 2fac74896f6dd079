"""Evidence, simulators and scores: how well an explanation predicts a neuron's activations."""

from .batch import ConditionScores, score_conditions
from .corr import pearson, pearson_ref
from .evidence import NeuronEvidence, Window, WindowBatch, store_evidence
from .score import ScoreResult, score_batch, score_explanations
from .simulate import EmbedSimulator, ExecSimulator, Simulation, Simulator, make_simulator

__all__ = ["ConditionScores", "EmbedSimulator", "ExecSimulator", "NeuronEvidence", "ScoreResult", "Simulation",
           "Simulator", "Window", "WindowBatch", "make_simulator", "pearson", "pearson_ref", "score_batch",
           "score_conditions", "score_explanations", "store_evidence"]
