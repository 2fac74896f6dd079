"""``neuronscope score``: score an explanations file against a NeuronStore or OpenAI NeuronRecords.

Rows are written as JSON Lines (atomically, after every chunk of neurons); a rerun with the same
output skips the (layer, index, method, simulator) rows already there, so an interrupted run loses at
most one chunk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError, StoreError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.files import read_explanations, read_jsonl, write_jsonl
from ..explanations.model import Explanation
from ..explanations.vocab import Vocab
from .evidence import NeuronEvidence, store_evidence
from .score import score_explanations
from .simulate import make_simulator


class EvidenceSource(Protocol):
    """Where exemplars come from: a NeuronStore or imported NeuronRecords."""

    vocab: Vocab

    def neurons(self) -> list[tuple[int, int]]:
        """Every (layer, index) the source can give evidence for."""
        ...

    def evidence(self, layer: int, indices: Sequence[int]) -> list[NeuronEvidence]:
        """Train/held-out windows for these neurons of one layer."""
        ...


class StoreSource:
    """Evidence from a NeuronStore (activations recomputed with the subject model)."""

    def __init__(self, store, *, context: tuple[int, int] = (12, 4), seed: int = 0) -> None:
        from ..store import NeuronStore, open_store

        self.store = store if isinstance(store, NeuronStore) else open_store(store)
        self.context, self.seed = context, seed
        self._vocab: Vocab | None = None

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:
            self._vocab = Vocab.from_tokenizer(self.store.tokenizer())
        return self._vocab

    def neurons(self) -> list[tuple[int, int]]:
        return [(layer, i) for layer in self.store.layers for i in range(self.store.n_neurons)]

    def has(self, layer: int, index: int) -> bool:
        return layer in self.store.layers and 0 <= index < self.store.n_neurons

    def evidence(self, layer: int, indices: Sequence[int], feature_frac: float | None = None) -> list[NeuronEvidence]:
        return store_evidence(self.store, layer, indices, context=self.context, seed=self.seed, vocab=self.vocab,
                              feature_frac=feature_frac)


def open_source(store: str | Path | None = None, records: str | Path | None = None, **kw) -> EvidenceSource:
    """A StoreSource (``store``) or an OpenAI NeuronRecord directory (``records``); exactly one."""
    if (store is None) == (records is None):
        raise ConfigError("give exactly one of a store directory or a records directory")
    if store is not None:
        return StoreSource(store, **kw)
    from ..interop.openai import OpenAIRecords

    return OpenAIRecords(records)


def _key(row: dict) -> tuple:
    return (row["layer"], row["index"], row["method"], row["simulator"])


def score_file(source: EvidenceSource, explanations: str | Path | list[Explanation], out: str | Path, *,
               simulator: str = "exec", chunk: int = 32, progress: bool = True, llm: dict | None = None) -> list[dict]:
    """Scores every explanation of the file on its neuron's held-out evidence; returns and writes the rows.

    Each row: layer, index, method, simulator, summary, score, mode_scores, coverage, mode_coverage,
    top_score, random_fire_rate, n_tokens, n_windows.
    """
    exps = read_explanations(explanations) if not isinstance(explanations, list) else explanations
    out = Path(out)
    rows = read_jsonl(out, "a scores JSONL file")
    done = {_key(r) for r in rows}
    has = getattr(source, "has", None)
    by_layer: dict[int, dict[int, list[Explanation]]] = defaultdict(lambda: defaultdict(list))
    for e in exps:
        if has is not None and not has(e.layer, e.index):
            raise StoreError(f"explanation of neuron {e.layer}/{e.index}: no such neuron in the source")
        if (e.layer, e.index, e.method, simulator) not in done:
            by_layer[e.layer][e.index].append(e)
    total = sum(len(v) for v in by_layer.values())
    bar = None
    if progress and total:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="neuron", desc=f"score[{simulator}]", dynamic_ncols=True)
    evaluator = ConditionEvaluator(source.vocab)
    if simulator == "llm":
        from ..agents.llm_simulator import BlockingLLMSimulator
        from ..llm import LLMConfig

        if not llm or not llm.get("model"):
            raise ConfigError("the llm simulator needs --model (and --base-url for a non-local server)")
        conf = LLMConfig(base_url=llm.get("base_url") or "http://localhost:8000/v1", model=llm["model"],
                         api_key_env=llm.get("api_key_env") or "OPENAI_API_KEY",
                         concurrency=int(llm.get("concurrency") or 8))
        sim = BlockingLLMSimulator(conf, source.vocab, str(out.with_suffix(".llmcache.sqlite")))
    else:
        sim = make_simulator(simulator, source.vocab, evaluator)
    try:
        for layer, per_neuron in sorted(by_layer.items()):
            indices = sorted(per_neuron)
            for a in range(0, len(indices), chunk):
                part = indices[a : a + chunk]
                for ev in source.evidence(layer, part):
                    these = per_neuron[ev.index]
                    for e, res in zip(these, score_explanations(ev, these, sim), strict=True):
                        rows.append({**res.to_dict(), "summary": e.summary})
                    if bar is not None:
                        bar.update(1)
                write_jsonl(out, rows)
    finally:
        if bar is not None:
            bar.close()
    write_jsonl(out, rows)
    return rows
