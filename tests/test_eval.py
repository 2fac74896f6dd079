"""Evaluation: metrics against independent references and hand-worked cases, the planted store, the rows the
report is built from, and the eval CLI on a small store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import wilcoxon as scipy_wilcoxon

from neuronscope.activations import activation_source
from neuronscope.eval import (
    POLYSEMANTIC_RULE,
    count_distribution,
    is_polysemantic,
    match_modes,
    mean_ci,
    paired,
    read_ground_truth,
    standard_suite,
    wilcoxon,
)
from neuronscope.eval.families import FAMILIES
from neuronscope.eval.metrics import by_group
from neuronscope.eval.planted import PlantedNeuron, TrueMode, build_planted_store, grammar_suite
from neuronscope.eval.run import _planted_rows, _real_rows, reference_method
from neuronscope.eval.tables import markdown
from neuronscope.explanations import Explanation, Mode, TokenIn


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
    assert len(suite) == 102
    assert {k: kinds.count(k) for k in set(kinds)} == {"mono": 12, "2-mode": 18, "3-mode": 12, "unequal": 6,
                                                       "context": 6, "duplicate": 6, "weak": 6,
                                                       **dict.fromkeys(FAMILIES, 6)}
    assert standard_suite(0)[20].to_dict() == suite[20].to_dict()
    assert [n.to_dict() for n in grammar_suite(0)] == [n.to_dict() for n in suite[:66]]
    assert all(m.feature is None for n in suite[:66] for m in n.modes)  # inside the grammar: conditions only
    assert all(m.feature is not None and not m.conditions for n in suite[66:] for m in n.modes)


def test_count_distribution_by_hand():
    d = count_distribution([3, 1, 5, 1, 2])
    # sorted 1 1 2 3 5: Q1 at index 1 (1), median index 2 (2), Q3 index 3 (3); 4 is listed with 0 neurons
    assert d == {"n": 5, "mean": 2.4, "min": 1, "q1": 1.0, "median": 2.0, "q3": 3.0, "max": 5,
                 "counts": {1: 2, 2: 1, 3: 1, 4: 0, 5: 1}}
    d = count_distribution([0, 1, 2, 3])
    assert (d["q1"], d["median"], d["q3"]) == (0.75, 1.5, 2.25)  # linear interpolation between ranks
    assert count_distribution([])["n"] == 0


def test_polysemantic_rule_by_hand():
    assert "at least 2 meanings" in POLYSEMANTIC_RULE
    assert "10%" in POLYSEMANTIC_RULE
    assert is_polysemantic([0.6, 0.1])  # 10% is enough
    assert not is_polysemantic([0.9, 0.09, 0.09])  # one meaning above 10%
    assert is_polysemantic([0.3, 0.3, 0.0])
    assert not is_polysemantic([1.0])


def test_per_family_aggregation_and_pairs_by_hand():
    items = [{"neuron": i, "method": m, "kind": k, "recall": r, "score": sc}
             for i, (k, r, sc_a, sc_b) in enumerate([("a", 1.0, 0.5, 0.4), ("a", 0.5, 0.6, 0.6), ("b", 0.0, 0.2, 0.5)])
             for m, sc in (("x", sc_a), ("y", sc_b))]
    g = by_group([it for it in items if it["method"] == "x"], "kind", ["recall"])
    assert list(g) == ["all", "a", "b"]
    assert (g["all"]["n"], g["a"]["n"], g["b"]["n"]) == (3, 2, 1)
    assert g["all"]["recall"]["mean"] == 0.5
    assert g["a"]["recall"]["mean"] == 0.75
    assert g["b"]["recall"]["mean"] == 0.0
    p = paired(items, "x", "y")
    assert (p["n"], p["a_better"], p["b_better"], p["ties"]) == (3, 1, 1, 1)
    assert p["mean_diff"] == pytest.approx((0.1 + 0.0 - 0.3) / 3)
    assert p["p"] == pytest.approx(wilcoxon([0.5, 0.6, 0.2], [0.4, 0.6, 0.5])[1])
    assert paired(items, "x", "z") is None
    assert reference_method(["top-tokens", "neuronscope", "single-pass"]) == "neuronscope"
    assert reference_method(["top-tokens", "single-pass"]) == "single-pass"


def _row(modes: list[Mode], method: str = "neuronscope", layer: int = 0, index: int = 0) -> dict:
    e = Explanation(layer, index, modes, method=method)
    return {"layer": layer, "index": index, "method": method, "explanation": e.to_dict(), "heldout": {"score": 0.5}}


def test_real_rows_count_meanings_not_the_background():
    modes = [Mode("numbers", conditions=[TokenIn(("1", "2"))], scores={"coverage": 0.5}, concept="numbers"),
             Mode("the", conditions=[TokenIn(("the",))], scores={"coverage": 0.12}),
             Mode("rest", conditions=[TokenIn(("a", "b"))], kind="background", scores={"coverage": 0.9}),
             Mode("text only", scores={"coverage": 0.9})]  # not executable: no meaning
    [it] = _real_rows([_row(modes), {"layer": 0, "index": 1, "method": "neuronscope", "error": "boom"}])
    assert (it["modes"], it["named"], it["multi"], it["polysemantic"]) == (2, 1, 1.0, 1.0)
    modes[1].scores["coverage"] = 0.05  # below 10%: two meanings, but not polysemantic by the rule
    [it] = _real_rows([_row(modes)])
    assert (it["modes"], it["multi"], it["polysemantic"]) == (2, 1.0, 0.0)


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


def test_planted_rows_match_meanings_only(minilm_store, tmp_path):
    neurons = [PlantedNeuron("2-mode", [TrueMode("the", [TokenIn(("the",))], 2.0),
                                        TrueMode("paren", [TokenIn(("(",))], 1.0)], [[0], [1]]),
               PlantedNeuron("position", [TrueMode("start", [], 3.0, {"kind": "doc_start", "first": 6})], [[0]])]
    st = build_planted_store(minilm_store, tmp_path / "p", neurons, seed=1)
    rows = [_row([Mode("the", conditions=[TokenIn(("the",))], concept="articles"),
                  Mode("low", conditions=[TokenIn(("a", "of", "("))], kind="background")], index=0),
            _row([Mode("the", conditions=[TokenIn(("the",))]), Mode("paren", conditions=[TokenIn(("(",))])],
                 method="single-pass", index=0),
            _row([Mode("stars", conditions=[TokenIn(("*",))])], index=1)]
    a, b, c = _planted_rows(st, rows)
    # the background mode is no meaning: one meaning found of two true modes, and it is right
    assert (a["n_found"], a["n_true"], a["recall"], a["precision"], a["exact"], a["named"]) == (1, 2, 0.5, 1.0, 0.0, 1)
    assert (b["n_found"], b["recall"], b["precision"], b["exact"]) == (2, 1.0, 1.0, 1.0)
    assert (c["kind"], c["n_true"], c["recall"], c["precision"]) == ("position", 1, 0.0, 0.0)


def test_markdown_has_every_table():
    dist = count_distribution([1, 2, 2])
    s = {"mean": 0.5, "ci95": [0.4, 0.6]}
    per = {k: {"n": 3, "score": s, "recall": s, "precision": s, "exact": s, "n_found": s, "n_true": s}
           for k in ("all", "mono", "phrase")}
    pair = {"a": "neuronscope", "b": "top-tokens", "n": 3, "mean_diff": 0.1, "a_better": 2, "b_better": 1, "ties": 0,
            "p": 0.04}
    common = {"modes_found": {"neuronscope": dist}, "concept_named": {"neuronscope": {"meanings": 5, "named": 2,
                                                                                     "share": 0.4}},
              "reference": "neuronscope", "paired_score": [pair]}
    rep = {"backend": "offline", "seed": 0, "methods": ["top-tokens", "neuronscope"],
           "planted": {"per_method": {"neuronscope": per}, "modes_found_by_family": {"neuronscope": {
               "mono": dist, "phrase": count_distribution([0, 0, 1])}}, **common},
           "real": {"per_method": {"neuronscope": {"n": 3, "score": s, "modes": s, "multi": s, "polysemantic": s}},
                    "polysemantic_rule": POLYSEMANTIC_RULE, **common}}
    md = markdown(rep)
    assert "| neuronscope | phrase | 3 | 0.500 [0.400, 0.600] |" in md
    assert "| 0×2, 1×1 |" in md  # the phrase family's meanings found: two neurons with 0, one with 1
    assert "| neuronscope | 3 | 1 | 1.50 | 2 | 2 | 2 | 1.67 | 0 | 1 | 2 |" in md  # min Q1 median Q3 max mean, 0 1 2
    assert "| neuronscope | 5 | 2 | 0.400 |" in md
    assert "| neuronscope − top-tokens | 3 | +0.100 | 2 | 1 | 0 | 0.04 |" in md
    assert POLYSEMANTIC_RULE in md
    assert md.index("## Planted neurons") < md.index("## Real neurons")


def test_eval_cli_planted_small(minilm_store, tmp_path, monkeypatch, capsys):
    from neuronscope.cli import main
    from neuronscope.eval import planted as planted_mod

    suite = standard_suite(0)
    small = [n for k in ("mono", "2-mode", "phrase") for n in [n for n in suite if n.kind == k][:2]]
    monkeypatch.setattr(planted_mod, "standard_suite", lambda seed=0: small)
    out = tmp_path / "ev"
    assert main(["eval", "--suite", "all", "--store", str(minilm_store.path), "--n-real", "4", "--rounds", "1",
                 "--method", "top-tokens,single-pass,neuronscope", "--out", str(out), "--quiet"]) == 0
    rep = json.loads((out / "eval.json").read_text())
    methods = ["top-tokens", "single-pass", "neuronscope"]
    assert list(rep["planted"]["per_method"]) == methods
    assert rep["planted"]["per_method"]["neuronscope"]["all"]["n"] == 6
    assert set(rep["planted"]["per_method"]["neuronscope"]) == {"all", "mono", "2-mode", "phrase"}
    assert rep["real"]["per_method"]["neuronscope"]["n"] == 4
    assert [(p["a"], p["b"], p["n"]) for p in rep["planted"]["paired_score"]] == [
        ("neuronscope", "top-tokens", 6), ("neuronscope", "single-pass", 6)]
    for part in ("planted", "real"):
        assert set(rep[part]["modes_found"]) == set(methods)
        assert sum(rep[part]["modes_found"]["neuronscope"]["counts"].values()) == (6 if part == "planted" else 4)
    md = (out / "eval.md").read_text()
    assert "| neuronscope | all | 6 |" in md
    assert "| neuronscope − single-pass | 6 |" in md
    assert "Real neurons" in md
    assert POLYSEMANTIC_RULE in md
    capsys.readouterr()
