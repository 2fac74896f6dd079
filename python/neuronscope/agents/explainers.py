"""Every explainer behind one interface (:class:`~neuronscope.agents.base.Explainer`), and what they share.

- ``neuronscope`` × ``offline``: the NeuronScope loop with every role an algorithm (``offline.py``);
- ``neuronscope`` × ``openai``: the loop with an LLM in the hypothesis, decomposition, explainer and
  refinement roles (``llm_agents.py``);
- ``single-pass`` × ``offline``: a token look-up table with strengths from the train split in one pass
  (the strong baseline); × ``openai``: one LLM call on the top exemplars (OpenAI's explainer);
- ``top-tokens`` × ``offline``: the strawman (top tokens, one strength), for comparison.

An :class:`ExplainContext` holds what all explainers of one run share: the evidence source, the
condition evaluator, the loop's config, the word-meaning embedding cache, and how a neuron's token
features, corpus probes and probe texts are obtained from the source's activations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Explanation
from ..scoring.evidence import NeuronEvidence, Window, WindowBatch
from ..scoring.score import score_batch
from ..scoring.simulate import ExecSimulator
from .base import AgentConfig, AgentResult, Explainer
from .feedback import (
    ProbeTextFn,
    joint_features,
    minilm_features,
    probe_texts,
    store_features,
    store_probe,
    store_survey,
    word_features,
)
from .workspace import FeatureFn, ProbeFn

METHODS = ("neuronscope", "single-pass", "top-tokens")
BACKENDS = ("offline", "openai", "local")
"""``local``: the LLM explainers against a llama.cpp server that the run starts and stops (``llm/local.py``)."""


class ExplainContext:
    """Resources shared by the explainers of one run over one evidence source."""

    def __init__(self, source: Any, config: AgentConfig) -> None:
        self.source = source
        self.config = config
        self.vocab = source.vocab
        self.evaluator = ConditionEvaluator(source.vocab)
        self.simulator = ExecSimulator(source.vocab, self.evaluator)
        self.store = getattr(source, "store", None)
        self.activations = getattr(source, "activations", None)
        self._words: FeatureFn | None = None

    def features(self, ev: NeuronEvidence) -> FeatureFn:
        """Token features for mode clustering: the subject's contextual vectors (or MiniLM's for records),
        joined with each token's own word meaning (one embedding cache for the whole run)."""
        ctx = (store_features(self.activations, ev.layer, ev.vocab, ev.features) if self.activations is not None
               else minilm_features(ev.vocab))
        if self._words is None:
            self._words = word_features(self.vocab)
        return joint_features(ctx, self._words)

    def probe(self, ev: NeuronEvidence) -> ProbeFn | None:
        """Corpus probes (windows outside the evidence where a mode fires), when the source has a corpus."""
        if self.store is None or self.activations is None:
            return None
        return store_probe(self.store, self.activations, ev, self.evaluator,
                           neighbours=self.config.neighbour_probes)

    def survey(self, ev: NeuronEvidence) -> list[Window]:
        """``config.survey_windows`` survey windows of each kind (``feedback.store_survey``); none without a corpus."""
        if self.store is None or self.activations is None or self.config.survey_windows <= 0:
            return []
        return store_survey(self.store, self.activations, ev, self.config.survey_windows,
                            bands=self.config.survey_bands)

    def probe_texts(self, ev: NeuronEvidence) -> ProbeTextFn | None:
        """New texts through the source's activations (the LLM refinement's probes)."""
        return probe_texts(self.activations, ev) if self.activations is not None else None

    def heldout_scorer(self, ev: NeuronEvidence) -> Callable[[Explanation], float]:
        """Held-out exec score of an explanation (recorded per round; never used for decisions)."""
        held = WindowBatch.build(ev.heldout)

        def score(e: Explanation) -> float:
            return score_batch([e], self.simulator.simulate([e], held), held, "exec")[0].score

        return score


class OfflineNeuronScopeExplainer(Explainer):
    method, backend = "neuronscope", "offline"

    def __init__(self, ctx: ExplainContext) -> None:
        self.ctx = ctx

    async def explain(self, evidence: NeuronEvidence) -> AgentResult:
        from .offline import OfflineNeuronScope

        c = self.ctx
        survey = c.survey(evidence)
        # The survey joins the train evidence in the loop (``OfflineNeuronScope._join_survey``); probes are drawn
        # outside it as well.
        seen = dataclasses.replace(evidence, train=evidence.train + survey) if survey else evidence
        return OfflineNeuronScope(evidence, evaluator=c.evaluator, cfg=c.config, features=c.features(seen),
                                  probe=c.probe(seen), heldout_scorer=c.heldout_scorer(evidence), survey=survey).run()


class OfflineSinglePassExplainer(Explainer):
    method, backend = "single-pass", "offline"

    def __init__(self, ctx: ExplainContext) -> None:
        self.ctx = ctx

    async def explain(self, evidence: NeuronEvidence) -> AgentResult:
        from .baseline import single_pass

        return single_pass(evidence, self.ctx.evaluator, self.ctx.config)


class TopTokensExplainer(Explainer):
    method, backend = "top-tokens", "offline"

    def __init__(self, ctx: ExplainContext) -> None:
        self.ctx = ctx

    async def explain(self, evidence: NeuronEvidence) -> AgentResult:
        from .baseline import top_tokens

        return top_tokens(evidence, self.ctx.evaluator, self.ctx.config)


class LLMNeuronScopeExplainer(Explainer):
    method, backend = "neuronscope", "openai"

    def __init__(self, ctx: ExplainContext, client: Any, backend: str = "openai") -> None:
        self.ctx, self.client, self.backend = ctx, client, backend

    async def explain(self, evidence: NeuronEvidence) -> AgentResult:
        from .llm_agents import LLMNeuronScope

        c = self.ctx
        agent = LLMNeuronScope(evidence, self.client, evaluator=c.evaluator, cfg=c.config,
                               features=c.features(evidence), probe_texts=c.probe_texts(evidence),
                               heldout_scorer=c.heldout_scorer(evidence), survey=c.survey(evidence))
        return await agent.arun()


class LLMSinglePassExplainer(Explainer):
    method, backend = "single-pass", "openai"

    def __init__(self, ctx: ExplainContext, client: Any, backend: str = "openai") -> None:
        self.ctx, self.client, self.backend = ctx, client, backend

    async def explain(self, evidence: NeuronEvidence) -> AgentResult:
        from .llm_agents import llm_single_pass

        return await llm_single_pass(evidence, self.client, self.ctx.evaluator, self.ctx.config)


def make_explainer(method: str, backend: str, ctx: ExplainContext, client: Any = None) -> Explainer:
    """The explainer of ``method`` on ``backend`` (``client``: the LLM client for ``openai`` and ``local``)."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if method == "top-tokens":  # needs no LLM whatever the backend
        return TopTokensExplainer(ctx)
    if backend == "offline":
        return OfflineNeuronScopeExplainer(ctx) if method == "neuronscope" else OfflineSinglePassExplainer(ctx)
    if client is None:
        raise ConfigError(f"the {backend} backend needs an LLM client")
    cls = LLMNeuronScopeExplainer if method == "neuronscope" else LLMSinglePassExplainer
    return cls(ctx, client, backend)
