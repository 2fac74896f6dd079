"""Undefined correlations (a constant prediction, a constant truth, fewer than two tokens) are marked as such
in what neuronscope writes — ``null`` as upstream tools do — while the in-memory fields stay finite."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuronscope.explanations import Explanation, Mode, TokenIn, Vocab
from neuronscope.scoring import ExecSimulator, NeuronEvidence, Window, WindowBatch, score_explanations
from neuronscope.scoring.score import score_batch, undefined_rows


@pytest.fixture
def vocab():
    return Vocab(["the", "cat", "sat", "on", "mat"])


def test_undefined_rows_against_hand_cases():
    true = torch.tensor([0.0, 1.0, 2.0])
    pred = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert undefined_rows(pred, true).tolist() == [True, False, True]
    assert undefined_rows(pred, torch.tensor([5.0, 5.0, 5.0])).tolist() == [True, True, True]  # constant truth
    assert undefined_rows(pred[:, :1], true[:1]).tolist() == [True, True, True]  # one token


def test_never_firing_mode_is_written_as_null(vocab):
    ids = np.array([0, 1, 2, 3, 4, 1], dtype=np.int64)
    acts = np.array([0.0, 2.0, 0.1, 0.0, 0.2, 1.8], dtype=np.float32)
    w = Window(ids=ids, acts=acts, kind="top", focus=1)
    ev = NeuronEvidence(0, 0, vocab, train=[w], heldout=[w])
    fires = Mode("cat", conditions=[TokenIn(("cat",))], strength=2.0)
    never = Mode("dog", conditions=[TokenIn(("dog",))], strength=1.0)
    e = Explanation(0, 0, [fires, never])
    res = score_explanations(ev, [e], ExecSimulator(vocab))[0]
    assert res.mode_scores[1] == 0.0  # finite in memory
    assert res.undefined == ["mode_scores[1]"]
    d = res.to_dict()
    assert d["mode_scores"][1] is None
    assert d["score"] == pytest.approx(float(np.corrcoef([0, 2, 0, 0, 0, 2], acts)[0, 1]), abs=1e-6)
    # an explanation that never fires: every correlation undefined
    only_never = Explanation(0, 0, [never])
    d2 = score_explanations(ev, [only_never], ExecSimulator(vocab))[0].to_dict()
    assert d2["score"] is None
    assert d2["mode_scores"] == [None]
    assert not any(isinstance(v, float) and math.isnan(v) for v in d2.values())


def test_constant_truth_is_undefined(vocab):
    w = Window(ids=np.array([0, 1, 2], dtype=np.int64), acts=np.ones(3, dtype=np.float32), kind="top", focus=1)
    batch = WindowBatch.build([w])
    e = Explanation(0, 0, [Mode("cat", conditions=[TokenIn(("cat",))], strength=1.0)])
    res = score_batch([e], ExecSimulator(vocab).simulate([e], batch), batch, "exec")[0]
    assert "score" in res.undefined
    assert res.to_dict()["score"] is None
