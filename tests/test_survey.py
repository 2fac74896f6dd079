"""Survey windows (``feedback.store_survey``): more real feedback from the subject model before the hypothesis,
never from the held-out windows."""

from __future__ import annotations

import numpy as np
import pytest

from neuronscope.activations import activation_source
from neuronscope.agents import AgentConfig
from neuronscope.agents.explainers import ExplainContext, OfflineNeuronScopeExplainer
from neuronscope.agents.feedback import evidence_positions, store_survey
from neuronscope.scoring.run import StoreSource


def _spans(windows) -> list[tuple[int, int]]:
    return [(w.start, w.start + len(w.ids)) for w in windows]


@pytest.mark.parametrize("prepared", [True, False])
def test_survey_windows_lie_outside_the_evidence_and_carry_real_activations(minilm_store, prepared):
    layer, index, n = 1, 7, 5
    acts_src = activation_source(minilm_store)
    if prepared:
        assert acts_src.prepare([layer])
    src = StoreSource(minilm_store, activations=acts_src)
    ev = src.evidence(layer, [index])[0]
    got = store_survey(minilm_store, acts_src, ev, n)
    size = len(minilm_store.tokens.tokens)
    taken = evidence_positions(ev, size)
    # brute force: every evidence position, train and held-out
    ref = np.zeros(size, dtype=bool)
    for w in ev.train + ev.heldout:
        ref[w.start : w.start + len(w.ids)] = True
    np.testing.assert_array_equal(taken, ref)
    assert 0 < len(got) <= 2 * n
    covered = np.zeros(size, dtype=int)
    for s, e in _spans(got):
        covered[s:e] += 1
    assert not (covered.astype(bool) & ref).any()  # never a held-out (or train) token
    assert covered.max() == 1  # no two survey windows share a token
    truth = activation_source(minilm_store).at(layer, [index], np.arange(size))[:, 0]
    for w in got:
        assert w.kind == "survey"
        assert 0 <= w.focus < len(w.ids)
        np.testing.assert_allclose(w.acts, truth[w.start : w.start + len(w.ids)], rtol=1e-4, atol=1e-4)
    focus = [w.start + w.focus for w in got]
    outside = np.where(ref, -np.inf, truth)
    if prepared:  # the first windows sit on the strongest activations outside the evidence
        assert focus[0] == int(np.argmax(outside))
        top = set(np.argsort(-outside, kind="stable")[: 4 * n].tolist())
        strong = [p for p in focus if p in top]
        assert len(strong) >= 1
        assert truth[focus[0]] >= np.max(truth[focus[1:]]) - 1e-6
    else:  # no lookup: random positions only (the strongest would need a pass over the corpus)
        assert len(got) <= n
    assert store_survey(minilm_store, acts_src, ev, 0) == []


def test_the_agent_fits_its_strengths_on_the_survey_and_scores_on_the_same_heldout(minilm_store):
    import asyncio

    from neuronscope.explanations.conditions import ConditionEvaluator
    from neuronscope.explanations.model import Explanation
    from neuronscope.scoring.evidence import WindowBatch

    layer, index = 3, 11
    src = StoreSource(minilm_store)
    src.activations.prepare([layer])
    ev = src.evidence(layer, [index])[0]
    on = ExplainContext(src, AgentConfig(survey_windows=8, probe_rounds=0))
    off = ExplainContext(src, AgentConfig(survey_windows=0, probe_rounds=0))
    survey = on.survey(ev)
    assert survey
    assert off.survey(ev) == []
    res = asyncio.run(OfflineNeuronScopeExplainer(on).explain(ev))
    roles = [t["role"] for t in res.transcript]
    # joined after the first clustering (which reads the stored evidence), before the first refinement
    assert roles.index("mode clustering") < roles.index("survey") < roles.index("refinement")
    entry = res.transcript[roles.index("survey")]
    assert entry["windows"] == len(survey)
    assert entry["train_windows"] == len(ev.train) + len(survey)
    assert "survey" not in [t["role"] for t in asyncio.run(OfflineNeuronScopeExplainer(off).explain(ev)).transcript]
    # every level of the explanation is a mean over the stored train windows and the survey, recomputed here
    ev_ = ConditionEvaluator(ev.vocab)
    batch = WindowBatch.build(ev.train + survey)
    e = Explanation.from_dict(res.explanation.to_dict())
    checked = 0
    for m in e.modes:
        if m.additive:  # the context term's strengths are shifts over the rest (tests/test_context_shifts.py)
            continue
        for c, level in zip(m.conditions, m.condition_strengths or [], strict=False):
            fires = ev_.evaluate(c, batch.ids, batch.seg)[batch.scored].numpy()
            if fires.any():
                np.testing.assert_allclose(level, batch.acts.numpy()[fires].mean(), rtol=1e-4, atol=1e-5)
                checked += 1
    assert checked > 0
    # the held-out evidence is the stored one either way: the survey never touches it
    assert len(ev.heldout) == len(src.evidence(layer, [index])[0].heldout)


def test_a_banded_survey_spreads_half_its_strong_windows_over_the_levels_below_the_top(minilm_store):
    from neuronscope.agents.feedback import BAND_CEILING, BAND_FLOOR

    layer, index, n, bands = 3, 5, 6, 3
    acts_src = activation_source(minilm_store)
    assert acts_src.prepare([layer])
    ev = StoreSource(minilm_store, activations=acts_src).evidence(layer, [index])[0]
    size = len(minilm_store.tokens.tokens)
    assert size <= 262_144  # the whole corpus is the scanned stretch: its maximum is the bands' reference
    ref = evidence_positions(ev, size)
    truth = activation_source(minilm_store).at(layer, [index], np.arange(size))[:, 0]
    top = float(np.where(ref, -np.inf, truth).max())
    got = store_survey(minilm_store, acts_src, ev, n, bands=bands)
    plain = store_survey(minilm_store, acts_src, ev, n)
    focus = np.asarray([truth[w.start + w.focus] for w in got])
    n_top = n - n // 2
    # first the strongest, as without bands (the same first windows), ...
    assert [(w.start, w.focus) for w in got[:1]] == [(w.start, w.focus) for w in plain[:1]]
    assert focus[0] == top
    # ... then one window in each band of [BAND_FLOOR, BAND_CEILING) × the maximum, weakest band first (brute force) ...
    edges = np.linspace(BAND_FLOOR, BAND_CEILING, bands + 1) * top
    banded = focus[n_top : n_top + n // 2]
    assert len(banded) == bands
    for b, a in enumerate(banded):
        assert edges[b] <= a < edges[b + 1], (b, a, edges)
    assert banded.max() < focus[:n_top].min()  # below every top pick: the levels a top-k sample never shows
    # ... and never a token of the evidence or of another survey window
    covered = np.zeros(size, dtype=int)
    for s, e in _spans(got):
        covered[s:e] += 1
    assert covered.max() == 1
    assert not (covered.astype(bool) & ref).any()
    assert all(w.kind == "survey" for w in got)
