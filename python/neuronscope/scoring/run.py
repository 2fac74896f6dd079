"""``neuronscope score``: score an explanations file against a NeuronStore or OpenAI NeuronRecords.

Rows are written as JSON Lines (atomically, after every chunk of neurons); a rerun with the same
output skips the (layer, index, method, simulator) rows already there, so an interrupted run loses at
most one chunk.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError, StoreError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.files import read_explanations
from ..explanations.model import Explanation
from ..explanations.vocab import Vocab
from ..stage import Stage, guarded, run_stage
from .evidence import NeuronEvidence, store_evidence
from .score import score_explanations
from .simulate import make_simulator

if TYPE_CHECKING:
    from ..activations import ActivationSource
    from ..llm import LLMConfig


class EvidenceSource(Protocol):
    """Where exemplars come from: a NeuronStore or imported NeuronRecords."""

    vocab: Vocab
    activations: ActivationSource | None
    """Where true activations are recomputed (None: the evidence is all there is, e.g. imported records)."""

    def neurons(self) -> list[tuple[int, int]]:
        """Every (layer, index) the source can give evidence for."""
        ...

    def evidence(self, layer: int, indices: Sequence[int], feature_frac: float | None = None) -> list[NeuronEvidence]:
        """Train/held-out windows for these neurons of one layer (``feature_frac``: see ``store_evidence``)."""
        ...


class StoreSource:
    """Evidence from a NeuronStore, activations recomputed through its activation source.

    ``activations``: an :class:`~neuronscope.activations.ActivationSource` (default: the one the store
    needs — its subject model, or its planted neurons).
    """

    def __init__(self, store, *, context: tuple[int, int] = (12, 4), seed: int = 0,
                 activations: ActivationSource | None = None) -> None:
        from ..activations import activation_source
        from ..store import NeuronStore, open_store

        self.store = store if isinstance(store, NeuronStore) else open_store(store)
        self.activations = activations if activations is not None else activation_source(self.store)
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
        return store_evidence(self.store, self.activations, layer, indices, context=self.context, seed=self.seed,
                              vocab=self.vocab, feature_frac=feature_frac)


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


def score(source: EvidenceSource, explanations: str | Path | list[Explanation], out: str | Path, *,
          simulator: str = "exec", chunk: int = 32, progress: bool = True,
          llm: LLMConfig | dict | None = None) -> list[dict]:
    """Scores every explanation of the file on its neuron's held-out evidence; returns and writes the rows.

    Each row: layer, index, method, simulator, summary, score, mode_scores, coverage, mode_coverage,
    top_score, random_fire_rate, n_tokens, n_windows. Resumable (see ``stage.py``).
    """
    exps = read_explanations(explanations) if not isinstance(explanations, list) else explanations
    out = Path(out)
    has = getattr(source, "has", None)
    per_neuron: dict[tuple[int, int], list[Explanation]] = defaultdict(list)
    for e in exps:
        if has is not None and not has(e.layer, e.index):
            raise StoreError(f"explanation of neuron {e.layer}/{e.index}: no such neuron in the source")
        per_neuron[(e.layer, e.index)].append(e)
    evaluator = ConditionEvaluator(source.vocab)
    if simulator == "llm":
        from ..llm import LLMConfig
        from .llm_simulate import BlockingLLMSimulator

        if not llm or (isinstance(llm, dict) and not llm.get("model")):
            raise ConfigError("the llm simulator needs --llm-model (and --base-url for a non-local server)")
        conf = llm if isinstance(llm, LLMConfig) else LLMConfig(
            base_url=llm.get("base_url") or "http://localhost:8000/v1", model=llm["model"],
            api_key_env=llm.get("api_key_env") or "OPENAI_API_KEY", concurrency=int(llm.get("concurrency") or 8))
        sim = BlockingLLMSimulator(conf, source.vocab, str(out.with_suffix(".llmcache.sqlite")))
    else:
        sim = make_simulator(simulator, source.vocab, evaluator)

    async def compute(layer: int, indices: list[int], todo: set, emit) -> None:
        for ev in source.evidence(layer, indices):
            these = [e for e in per_neuron[(layer, ev.index)] if (layer, ev.index, e.method, simulator) in todo]

            def rows_of(ev=ev, these=these) -> list[dict]:
                return [{**res.to_dict(), "summary": e.summary}
                        for e, res in zip(these, score_explanations(ev, these, sim), strict=True)]

            async def job(rows_of=rows_of) -> list[dict]:
                # The LLM simulator runs its own event loop (it blocks): give it a thread of its own.
                return await asyncio.to_thread(rows_of) if simulator == "llm" else rows_of()

            got = await guarded({"layer": layer, "index": ev.index, "simulator": simulator},
                                _as_row_list(job()))
            for row in (got["rows"] if "rows" in got else
                        [{**got, "method": e.method} for e in these]):
                emit(row)

    stage = Stage(what="a scores JSONL file", row_key=_key, compute=compute, desc=f"score[{simulator}]", chunk=chunk,
                  keys=lambda layer, i: [(layer, i, e.method, simulator) for e in per_neuron[(layer, i)]])
    return run_stage(stage, out, sorted(per_neuron), progress=progress)


async def _as_row_list(job) -> dict:
    return {"rows": await job}


score_file = score
"""Former name of :func:`score` (kept for one release)."""
