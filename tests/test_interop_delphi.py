"""delphi interop: score files in the shapes delphi's own code writes and reads, values computed by hand,
undefined correlations written as delphi and OpenAI write them, delphi-native files read back, and the
``export --method`` CLI on a two-method explanations file.

The reference shapes below are delphi's (EleutherAI/delphi): ``scorers/simulator/simulation/types.py``
(``ScoredSimulation``, ``ScoredSequenceSimulation``, ``SequenceSimulation``, ``convert_to_legacy_format``:
NaN → ``"nan"``, overall group at distance 0, quantile q at q + 1), ``scorers/classifier/sample.py``
(``ClassifierOutput``) and ``log/result_analysis.py`` (``load_data``: the keys it indexes and the latent
index taken from the file name).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from neuronscope.cli import main
from neuronscope.explanations import Explanation, Mode, TokenIn
from neuronscope.interop import (
    OpenAIRecords,
    export_delphi,
    export_openai,
    read_delphi_explanations,
    read_openai_explanations,
)
from neuronscope.scoring import ExecSimulator, WindowBatch, score_explanations

MONTHS = (" January", " March", " May")

# (tokens, activations); the held-out windows (odd ranks of each group) are T1, T3, Q1, R1, R3.
TOP = [([" In", " January", " we", " ran"], [0.1, 4.0, 0.2, 0.0]),
       ([" the", " March", " sun"], [0.05, 3.5, 0.3]),
       ([" May", " be", " late"], [3.0, 0.1, 0.2]),
       ([" a", " cat", " May", " sat"], [0.0, 0.4, 2.5, 0.1])]
STRATUM = [([" the", " dog"], [0.1, 0.3]),
           ([" in", " May", " it"], [0.0, 0.0, 0.0])]  # constant truth
RANDOM = [([" x"], [0.2]),
          ([" the", " cat"], [0.2, 0.1]),  # no month: the months explanation predicts a constant 0
          ([" y", " z"], [0.0, 0.1]),
          ([" ok"], [0.3])]  # one token
HELD = [TOP[1], TOP[3], STRATUM[1], RANDOM[1], RANDOM[3]]
HELD_KIND = ["top", "top", "quantile", "random", "random"]

DELPHI_SCORED_SIMULATION = {"distance", "scored_sequence_simulations", "ev_correlation_score", "rsquared_score",
                            "absolute_dev_explained_score"}
DELPHI_SCORED_SEQUENCE = {"distance", "simulation", "true_activations", "ev_correlation_score", "rsquared_score",
                          "absolute_dev_explained_score"}
DELPHI_SEQUENCE_SIMULATION = {"tokens", "expected_activations", "activation_scale", "distribution_values",
                              "distribution_probabilities", "uncalibrated_simulation"}
DELPHI_ACTIVATION_SCALES = {"simulated_normalized_activations", "simulated_unnormalized_activations"}
DELPHI_CLASSIFIER_OUTPUT = ["str_tokens", "activations", "distance", "activating", "prediction", "probability",
                            "correct"]


def _rec(tokens: list[str], acts: list[float]) -> dict:
    return {"dataclass_name": "ActivationRecord", "tokens": tokens, "activations": acts}


@pytest.fixture
def records(tmp_path: Path) -> Path:
    root = tmp_path / "records"
    rec = {"dataclass_name": "NeuronRecord", "neuron_id": {"layer_index": 0, "neuron_index": 3},
           "most_positive_activation_records": [_rec(*r) for r in TOP],
           "random_sample_by_quantile": [[_rec(*r) for r in STRATUM]],
           "random_sample": [_rec(*r) for r in RANDOM], "mean": 0.3, "variance": 1.0}
    (root / "0").mkdir(parents=True)
    (root / "0" / "3.json").write_text(json.dumps(rec), encoding="utf-8")
    return root


def _months(strength: float = 4.0) -> Explanation:
    return Explanation(0, 3, [Mode("months", "month names", [TokenIn(MONTHS)], strength=strength)],
                       method="neuronscope")


def _two_modes() -> Explanation:
    return Explanation(0, 3, [Mode("months", "month names", [TokenIn(MONTHS)], strength=4.0),
                              Mode("cat", "the word cat", [TokenIn(("cat",))], strength=1.0)], method="neuronscope")


def _never() -> Explanation:
    return Explanation(0, 3, [Mode("zebra", "the word zebra", [TokenIn(("zebra",))], strength=1.0)],
                       method="single-pass")


def _hand_pred(tokens: list[str], modes: list[tuple[set[str], float]]) -> list[float]:
    return [max((s for words, s in modes if t.strip().lower() in words), default=0.0) for t in tokens]


def _corr(pred, true) -> float:
    """np.corrcoef, NaN for a constant side (as OpenAI's and delphi's correlation_score)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if len(pred) < 2:
            return math.nan
        return float(np.corrcoef(np.asarray(true, np.float64), np.asarray(pred, np.float64))[0, 1])


def _export(records: Path, out: Path, exps: list[Explanation], scorers=("simulation", "detection")) -> list[Path]:
    src = OpenAIRecords(records)
    ev = src.evidence(0, [3])[0]
    sim = ExecSimulator(src.vocab)
    batch = WindowBatch.build(ev.heldout)
    results = score_explanations(ev, exps, sim)
    sims = sim.simulate(exps, batch)
    return export_delphi(out, exps, results, simulations=[(batch, s) for s in sims], vocab=src.vocab,
                         scorers=scorers)


def _load_data(scores_path: Path, modules: list[str]) -> list[dict]:
    """delphi's ``log.load_data`` parse, without pandas: every key it indexes, latent from the file name."""
    rows = []
    for score_type_dir in scores_path.iterdir():
        if not score_type_dir.is_dir():
            continue
        for module in modules:
            for file in score_type_dir.glob(f"*{module}*"):
                data = json.loads(file.read_bytes())
                latent_idx = int(file.stem.split("latent")[-1])
                rows += [{"text": "".join(ex["str_tokens"]), "distance": ex["distance"],
                          "activating": ex["activating"], "prediction": ex["prediction"],
                          "probability": ex["probability"], "correct": ex["correct"],
                          "activations": ex["activations"], "latent_idx": latent_idx,
                          "score_type": score_type_dir.name, "module": module} for ex in data]
    return rows


def _is_delphi_score(v) -> bool:
    return v == "nan" or (isinstance(v, float) and math.isfinite(v))


def test_simulation_file_is_delphis_scored_simulation_list_with_hand_computed_scores(records, tmp_path):
    out = tmp_path / "run"
    written = _export(records, out, [_months()])
    name = "layers.0.mlp_latent3.txt"
    assert out / "scores" / "simulation" / name in written
    body = json.loads((out / "scores" / "simulation" / name).read_text(encoding="utf-8"))
    assert isinstance(body, list)
    assert [g["distance"] for g in body] == [1, 0]  # activating quantile 0 → 1; overall → 0 (delphi's order)
    for g in body:
        assert set(g) == DELPHI_SCORED_SIMULATION
        assert g["rsquared_score"] == 0
        assert g["absolute_dev_explained_score"] == 0
        assert _is_delphi_score(g["ev_correlation_score"])
        for s in g["scored_sequence_simulations"]:
            assert set(s) == DELPHI_SCORED_SEQUENCE
            assert set(s["simulation"]) == DELPHI_SEQUENCE_SIMULATION
            assert s["simulation"]["activation_scale"] in DELPHI_ACTIVATION_SCALES
            assert s["simulation"]["uncalibrated_simulation"] is None
            assert isinstance(s["distance"], int)
            assert _is_delphi_score(s["ev_correlation_score"])

    modes = [({m.strip().lower() for m in MONTHS}, 4.0)]
    preds = [_hand_pred(t, modes) for t, _ in HELD]
    overall = body[1]
    seqs = overall["scored_sequence_simulations"]
    assert [s["simulation"]["tokens"] for s in seqs] == [t for t, _ in HELD]
    assert [s["simulation"]["expected_activations"] for s in seqs] == preds
    assert [s["true_activations"] for s in seqs] == [a for _, a in HELD]
    assert [s["distance"] for s in seqs] == [0, 0, -1, -1, -1]
    # Per window: T1 and T3 defined; Q1 (constant truth), R1 (constant prediction), R3 (one token) undefined.
    want = [_corr(p, a) for p, (_, a) in zip(preds, HELD, strict=True)]
    assert [math.isnan(w) for w in want] == [False, False, True, True, True]
    for s, w in zip(seqs, want, strict=True):
        if math.isnan(w):
            assert s["ev_correlation_score"] == "nan"
        else:
            assert s["ev_correlation_score"] == pytest.approx(w, abs=1e-6)
    all_p = [x for p in preds for x in p]
    all_t = [x for _, a in HELD for x in a]
    assert overall["ev_correlation_score"] == pytest.approx(_corr(all_p, all_t), abs=1e-6)
    top_p, top_t = preds[0] + preds[1], HELD[0][1] + HELD[1][1]
    assert body[0]["ev_correlation_score"] == pytest.approx(_corr(top_p, top_t), abs=1e-6)
    assert body[0]["scored_sequence_simulations"] == seqs[:2]

    back = read_delphi_explanations(out)
    assert [(e.layer, e.index, e.text) for e in back] == [(0, 3, "month names")]
    assert back[0].scores == pytest.approx({"simulation": _corr(all_p, all_t), "score": _corr(all_p, all_t)},
                                           abs=1e-6)
    assert "undefined_scores" not in back[0].meta


def test_detection_file_is_delphis_classifier_output_and_load_data_reads_it(records, tmp_path):
    out = tmp_path / "run"
    _export(records, out, [_two_modes()], scorers=("detection",))
    assert not (out / "scores" / "simulation").exists()
    body = json.loads((out / "scores" / "detection" / "layers.0.mlp_latent3.txt").read_text(encoding="utf-8"))
    for r in body:
        assert list(r) == DELPHI_CLASSIFIER_OUTPUT
        assert isinstance(r["activating"], bool)
        assert isinstance(r["prediction"], bool)
        assert isinstance(r["correct"], bool)
        assert isinstance(r["probability"], float)
        assert r["distance"] in (0, -1)
    assert [r["str_tokens"] for r in body] == [t for t, _ in HELD]
    assert [r["activations"] for r in body] == [a for _, a in HELD]
    # By hand: months predict 4 and cat 1 (each mode fires at half its own maximum: months ≥ 2, cat ≥ 0.5);
    # probability = the window's largest prediction / 4.
    assert [r["activating"] for r in body] == [k == "top" for k in HELD_KIND]
    assert [r["prediction"] for r in body] == [True, True, True, True, False]
    assert [r["probability"] for r in body] == [1.0, 1.0, 1.0, 0.25, 0.0]
    assert [r["correct"] for r in body] == [True, True, False, False, True]

    rows = _load_data(out / "scores", ["layers.0.mlp"])
    assert len(rows) == len(HELD)
    assert {r["latent_idx"] for r in rows} == {3}
    assert rows[0]["text"] == " the March sun"
    export_info = json.loads((out / "neuronscope_export.json").read_text(encoding="utf-8"))
    assert export_info["simulators"] == ["exec"]
    assert export_info["scorers"] == ["detection"]


def test_undefined_scores_are_nan_for_delphi_and_null_for_openai(records, tmp_path):
    # Never fires: the prediction is 0 everywhere, so every correlation is undefined (not "uncorrelated").
    out = tmp_path / "run"
    _export(records, out, [_never()])
    body = json.loads((out / "scores" / "simulation" / "layers.0.mlp_latent3.txt").read_text(encoding="utf-8"))
    assert [g["ev_correlation_score"] for g in body] == ["nan", "nan"]
    assert all(s["ev_correlation_score"] == "nan" for g in body for s in g["scored_sequence_simulations"])
    back = read_delphi_explanations(out)[0]
    assert back.scores == {}
    assert back.meta["undefined_scores"] == ["score", "simulation"]

    src = OpenAIRecords(records)
    ev = src.evidence(0, [3])[0]
    sim = ExecSimulator(src.vocab)
    res = score_explanations(ev, [_never(), _months()], sim)
    assert res[0].score == 0.0  # the internal convention stays 0.0; only the export says "undefined"
    batch = WindowBatch.build(ev.heldout)
    sims = sim.simulate([_never(), _months()], batch)
    path = export_openai(tmp_path / "oa", _never(), res[0], batch, sims[0], vocab=src.vocab)
    path = export_openai(tmp_path / "oa", _months(), res[1], batch, sims[1], vocab=src.vocab)
    raw = path.read_text(encoding="utf-8")
    assert "NaN" not in raw  # orjson writes NaN as null; so do we
    never, months = json.loads(raw)["scored_explanations"]
    assert never["scored_simulation"]["ev_correlation_score"] is None
    assert [s["ev_correlation_score"] for s in never["scored_simulation"]["scored_sequence_simulations"]] == \
        [None] * len(HELD)
    per = [s["ev_correlation_score"] for s in months["scored_simulation"]["scored_sequence_simulations"]]
    assert [p is None for p in per] == [False, False, True, True, True]
    assert months["scored_simulation"]["ev_correlation_score"] == pytest.approx(res[1].score, abs=1e-6)
    oa = read_openai_explanations(tmp_path / "oa")
    assert oa[0].scores == {}
    assert oa[0].meta["undefined_scores"] == ["score"]
    assert oa[1].scores["score"] == pytest.approx(res[1].score, abs=1e-6)


def _native(overall, quantile=0.5, *, with_overall: bool = True) -> list[dict]:
    """A score file as delphi's convert_to_legacy_format + orjson writes it (overall group last)."""
    seq = {"distance": 0, "simulation": {"tokens": [" a", " b"], "expected_activations": [1.0, 2.0],
                                         "activation_scale": "simulated_normalized_activations",
                                         "distribution_values": [], "distribution_probabilities": [],
                                         "uncalibrated_simulation": None},
           "true_activations": [0, 3], "ev_correlation_score": 1.0, "rsquared_score": 0,
           "absolute_dev_explained_score": 0}
    rest = {"distance": -1, "simulation": {**seq["simulation"], "expected_activations": [0.0, 1.0]},
            "true_activations": [0, 0], "ev_correlation_score": "nan", "rsquared_score": 0,
            "absolute_dev_explained_score": 0}
    groups = [{"distance": 1, "scored_sequence_simulations": [seq], "ev_correlation_score": quantile,
               "rsquared_score": 0, "absolute_dev_explained_score": 0}]
    if with_overall:
        groups.append({"distance": 0, "scored_sequence_simulations": [seq, rest], "ev_correlation_score": overall,
                       "rsquared_score": 0, "absolute_dev_explained_score": 0})
    return groups


# delphi writes "nan"; a NaN float that reached orjson would be null; Python's json writes NaN.
@pytest.mark.parametrize(("overall", "want"), [(0.375, 0.375), ("nan", None), (None, None), (math.nan, None)])
def test_reads_delphi_native_simulation_scores(tmp_path, overall, want):
    (tmp_path / "explanations").mkdir()
    (tmp_path / "scores" / "simulation").mkdir(parents=True)
    (tmp_path / "scores" / "fuzz").mkdir(parents=True)
    name = "layers.4.mlp_latent12.txt"
    (tmp_path / "explanations" / name).write_text(json.dumps("dates"), encoding="utf-8")
    (tmp_path / "scores" / "simulation" / name).write_text(json.dumps(_native(overall)), encoding="utf-8")
    fuzz = [{"str_tokens": ["a"], "activations": [1.0], "distance": 0, "activating": True, "prediction": True,
             "probability": 0.9, "correct": True}]
    (tmp_path / "scores" / "fuzz" / name).write_text(json.dumps(fuzz), encoding="utf-8")
    if isinstance(overall, float) and math.isnan(overall):
        assert "NaN" in (tmp_path / "scores" / "simulation" / name).read_text()
    [e] = read_delphi_explanations(tmp_path)
    assert (e.layer, e.index, e.text, e.method) == (4, 12, "dates", "delphi")
    if want is None:
        assert e.scores == {}
        assert e.meta["undefined_scores"] == ["score", "simulation"]
    else:
        assert e.scores == {"simulation": want, "score": want}  # the distance-0 record, not the quantile's 0.5


def test_reads_delphi_simulation_without_overall_group_as_pooled_pearson(tmp_path):
    (tmp_path / "explanations").mkdir()
    (tmp_path / "scores" / "simulation").mkdir(parents=True)
    name = "layers.1.mlp_latent0.txt"
    (tmp_path / "explanations" / name).write_text(json.dumps("x"), encoding="utf-8")
    body = json.dumps(_native(0.9, with_overall=False))
    (tmp_path / "scores" / "simulation" / name).write_text(body, encoding="utf-8")
    [e] = read_delphi_explanations(tmp_path)
    assert e.scores["simulation"] == pytest.approx(1.0)  # (1, 2) vs (0, 3): r = 1


def _two_method_file(path: Path) -> Path:
    rows = [{"layer": 0, "index": 3, "method": "neuronscope", "explanation": _months().to_dict()},
            {"layer": 0, "index": 3, "method": "single-pass",
             "explanation": Explanation(0, 3, [Mode("cat", "the word cat", [TokenIn(("cat",))])],
                                        method="single-pass").to_dict()}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_export_method_picks_one_of_two_for_delphi(records, tmp_path, capsys):
    exps = _two_method_file(tmp_path / "two.jsonl")
    base = ["export", "--records", str(records), "--explanations", str(exps), "--format", "delphi"]
    assert main([*base, "--out", str(tmp_path / "both")]) == 2
    err = capsys.readouterr().err
    assert "several methods (neuronscope, single-pass)" in err
    assert "--method" in err
    assert not (tmp_path / "both").exists()

    assert main([*base, "--out", str(tmp_path / "ns"), "--method", "neuronscope"]) == 0
    [e] = read_delphi_explanations(tmp_path / "ns")
    assert e.text == "month names"
    assert main([*base, "--out", str(tmp_path / "sp"), "--method", "single-pass"]) == 0
    assert read_delphi_explanations(tmp_path / "sp")[0].text == "the word cat"

    assert main([*base, "--out", str(tmp_path / "x"), "--method", "manual"]) == 2
    assert "no explanation of method manual in the file; it holds neuronscope, single-pass" in capsys.readouterr().err

    # OpenAI's layout keeps several explanations per neuron: no --method needed, --method filters.
    assert main(["export", "--records", str(records), "--explanations", str(exps), "--format", "openai",
                 "--out", str(tmp_path / "oa")]) == 0
    assert [e.text for e in read_openai_explanations(tmp_path / "oa")] == ["month names", "the word cat"]
    assert main(["export", "--records", str(records), "--explanations", str(exps), "--format", "openai",
                 "--method", "single-pass", "--out", str(tmp_path / "oa1")]) == 0
    assert [e.text for e in read_openai_explanations(tmp_path / "oa1")] == ["the word cat"]


def test_cli_score_method_scores_one_method_of_two(records, tmp_path, capsys):
    exps = _two_method_file(tmp_path / "two.jsonl")
    out = tmp_path / "s.jsonl"
    assert main(["score", "--records", str(records), "--explanations", str(exps), "--method", "single-pass",
                 "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert [r["method"] for r in rows] == ["single-pass"]
    assert main(["score", "--records", str(records), "--explanations", str(exps), "--out", str(tmp_path / "a.jsonl"),
                 "--quiet"]) == 0
    both = [json.loads(ln) for ln in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert sorted(r["method"] for r in both) == ["neuronscope", "single-pass"]
    assert main(["score", "--records", str(records), "--explanations", str(exps), "--method", "openai",
                 "--out", str(tmp_path / "x.jsonl"), "--quiet"]) == 2
    assert "it holds neuronscope, single-pass" in capsys.readouterr().err
