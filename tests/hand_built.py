"""Hand-built neurons for the offline agent's unit tests: windows of MiniLM vocabulary words with chosen
activations, and an agent over them (``test_mode_meanings``, ``test_pruning_cv``)."""

from __future__ import annotations

import numpy as np

from neuronscope.agents import OfflineConfig, OfflineNeuronScope
from neuronscope.explanations import ConditionEvaluator, Vocab
from neuronscope.scoring import NeuronEvidence, Window


def minilm_vocab() -> Vocab:
    from transformers import AutoTokenizer

    from neuronscope.models import resolve_model_path

    return Vocab.from_tokenizer(AutoTokenizer.from_pretrained(resolve_model_path("minilm")))


def window(vocab: Vocab, words: list[str], acts: list[float], kind: str = "top") -> Window:
    ids = [int(vocab.ids_in([w])[0]) for w in words]
    return Window(ids=np.asarray(ids), acts=np.asarray(acts, np.float32), kind=kind, focus=0 if kind == "top" else -1)


def make_agent(vocab: Vocab, windows: list[Window]) -> OfflineNeuronScope:
    ev = NeuronEvidence(0, 0, vocab, train=windows, heldout=windows[:1], stats={"max": 3.0})
    return OfflineNeuronScope(ev, evaluator=ConditionEvaluator(vocab), cfg=OfflineConfig())
