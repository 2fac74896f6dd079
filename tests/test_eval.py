"""Evaluation: metrics against independent references, the planted store, and the eval CLI on a small store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import wilcoxon as scipy_wilcoxon

from neuronscope.activations import activation_source
from neuronscope.eval import match_modes, mean_ci, read_ground_truth, standard_suite, wilcoxon
from neuronscope.eval.planted import PlantedNeuron, TrueMode, build_planted_store
from neuronscope.explanations import TokenIn


def test_wilcoxon_equals_scipy_approx():
    rng = np.random.default_rng(0)
    for n in (8, 40, 150):
        x = rng.normal(size=n)
        y = x + rng.normal(0.3, 1, n)
        y[:3] = x[:3]  # zero differences
        y[3:6] = x[3:6] + 0.5  # ties
        got = wilcoxon(x, y)
        want = scipy_wilcoxon(x, y, method="approx")
        assert got[0] == pytest.approx(float(want.statistic))
        assert got[1] == pytest.approx(float(want.pvalue), rel=1e-9)
    assert wilcoxon([1, 2], [1, 2]) == (0.0, 1.0)


def test_match_modes_by_iou():
    t = np.zeros((2, 100), bool)
    t[0, :20] = True
    t[1, 50:70] = True
    found = np.zeros((3, 100), bool)
    found[0, 52:70] = True  # IoU 0.9 with true 1
    found[1, :5] = True  # IoU 0.25 with true 0: no match
    found[2, :20] = True  # exact match with true 0
    mm = match_modes(found, t)
    assert mm.recall == 1.0
    assert mm.precision == pytest.approx(2 / 3)
    assert sorted((i, j) for i, j, _ in mm.pairs) == [(0, 1), (2, 0)]
    merged = match_modes(found[2:], t, groups=[[0, 1]])  # duplicates count as one mode
    assert merged.n_true == 1
    assert merged.recall == 1.0
    assert match_modes(np.zeros((0, 100), bool), t).precision == 0.0
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5
    assert lo < m < hi


def test_suite_shape():
    suite = standard_suite(0)
    kinds = [n.kind for n in suite]
    assert len(suite) >= 60
    assert {k: kinds.count(k) for k in set(kinds)} == {"mono": 12, "2-mode": 18, "3-mode": 12, "unequal": 6,
                                                       "context": 6, "duplicate": 6, "weak": 6}
    assert standard_suite(0)[20].to_dict() == suite[20].to_dict()


def test_planted_store_is_a_store(minilm_store, tmp_path):
    neurons = [PlantedNeuron("mono", [TrueMode("returns", [TokenIn(("return",))], 3.0)], [[0]]),
               PlantedNeuron("2-mode", [TrueMode("a", [TokenIn(("the",))], 2.0),
                                        TrueMode("b", [TokenIn(("(",))], 1.0)], [[0], [1]])]
    st = build_planted_store(minilm_store, tmp_path / "p", neurons, seed=1)
    assert st.layers == [0]
    assert st.n_neurons == 2
    rec = st.neuron(0, 0)
    assert rec.top[0].tokens[rec.top[0].focus] == "return"
    assert rec.top[0].activation == pytest.approx(3.0, rel=0.25)
    acts = activation_source(st).at(0, [0, 1], np.arange(200))
    np.testing.assert_array_equal(acts, np.load(st.path / "planted_activations.npy")[:200])
    assert [n.to_dict() for n in read_ground_truth(st)] == [n.to_dict() for n in neurons]
    again = build_planted_store(minilm_store, tmp_path / "p", neurons, seed=1)  # reused, not rebuilt
    assert again.path == st.path


def test_eval_cli_planted_small(minilm_store, tmp_path, monkeypatch, capsys):
    from neuronscope.cli import main
    from neuronscope.eval import planted as planted_mod

    rng_suite = standard_suite(0)
    small = [n for n in rng_suite if n.kind in ("mono", "2-mode")][:6]
    monkeypatch.setattr(planted_mod, "standard_suite", lambda seed=0: small)
    out = tmp_path / "ev"
    assert main(["eval", "--suite", "all", "--store", str(minilm_store.path), "--n-real", "4", "--rounds", "1",
                 "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "eval.json").read_text())
    assert set(rep["planted"]["per_method"]) == {"single-pass", "neuronscope"}
    assert rep["planted"]["per_method"]["neuronscope"]["all"]["n"] == 6
    assert rep["real"]["per_method"]["neuronscope"]["n"] == 4
    assert rep["planted"]["paired_score"]["n"] == 6
    md = (out / "eval.md").read_text()
    assert "| neuronscope | all | 6 |" in md
    assert "Real neurons" in md
    capsys.readouterr()
