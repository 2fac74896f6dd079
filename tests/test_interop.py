"""Interop: OpenAI NeuronRecord files (built here in OpenAI's published layout) as evidence, OpenAI and
delphi exports and their readers, and bad inputs failing with the named errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from neuronscope.errors import ConfigError, ExplanationError, StoreError
from neuronscope.explanations import Explanation, Mode, PrevTokenIn, TokenIn
from neuronscope.interop import (
    OpenAIRecords,
    export_delphi,
    export_openai,
    read_delphi_explanations,
    read_openai_explanations,
)
from neuronscope.scoring import ExecSimulator, WindowBatch, score_explanations

WORDS = [" the", " a", " cat", " dog", " ran", " sat", " on", " mat", ",", ".", " café", "\n", " and", " of"]
MONTHS = [" January", " February", " March", " April", " May", " June"]
STRENGTH = 4.0


def _activation_record(rng: np.random.Generator, length: int, p_month: float, tagged: bool) -> dict:
    """A planted neuron: ~STRENGTH on month names, ~0 elsewhere (small noise so nothing is constant)."""
    tokens = [MONTHS[rng.integers(len(MONTHS))] if rng.random() < p_month else WORDS[rng.integers(len(WORDS))]
              for _ in range(length)]
    acts = [(STRENGTH if t in MONTHS else 0.0) + float(rng.normal(0.0, 0.02)) for t in tokens]
    rec = {"tokens": tokens, "activations": acts}
    return {"dataclass_name": "ActivationRecord", **rec} if tagged else rec


def _neuron_record(layer: int, index: int, seed: int, *, n_top: int = 6, strata: tuple[int, ...] = (3, 2, 0),
                   n_random: int = 5, length: int = 16, tagged: bool = True) -> dict:
    """One NeuronRecord as OpenAI's FastDataclass serializer writes it (NaN / null moments included)."""
    rng = np.random.default_rng(seed)
    top = [_activation_record(rng, length, 0.5, tagged) for _ in range(n_top)]
    top.sort(key=lambda r: -max(r["activations"]))
    rec = {
        "neuron_id": {"layer_index": layer, "neuron_index": index},
        "random_sample": [_activation_record(rng, length, 0.1, tagged) for _ in range(n_random)],
        "random_sample_by_quantile": [[_activation_record(rng, length, 0.1, tagged) for _ in range(k)]
                                      for k in strata],
        "quantile_boundaries": [0.0, 0.5, 3.9],
        "mean": 0.42, "variance": 2.25, "skewness": math.nan, "kurtosis": None,
        "most_positive_activation_records": top,
    }
    if tagged:
        rec["dataclass_name"] = "NeuronRecord"
        rec["neuron_id"]["dataclass_name"] = "NeuronId"
    return rec


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")  # NaN is written as NaN


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[tuple[int, int], dict]]:
    root = tmp_path / "collated-activations"
    recs = {(2, 5): _neuron_record(2, 5, seed=1), (2, 0): _neuron_record(2, 0, seed=2),
            (10, 3): _neuron_record(10, 3, seed=3)}
    for (layer, index), rec in recs.items():
        _write(root / str(layer) / f"{index}.json", rec)
    (root / "README.md").write_text("not a layer")
    (root / "2" / "notes.txt").write_text("not a neuron")
    return root, recs


def _split(rec: dict) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """The documented split, computed from the raw dict: (kind, record) for train and held-out."""
    groups = [("top", rec["most_positive_activation_records"])]
    groups += [("quantile", s) for s in rec["random_sample_by_quantile"]]
    groups += [("random", rec["random_sample"])]
    train = [(k, r) for k, g in groups for r in g[0::2]]
    held = [(k, r) for k, g in groups for r in g[1::2]]
    return train, held


def _check_windows(windows, expected, vocab) -> None:
    assert [w.kind for w in windows] == [k for k, _ in expected]
    for w, (kind, r) in zip(windows, expected, strict=True):
        assert [vocab.pieces[i] for i in w.ids] == r["tokens"]
        np.testing.assert_array_equal(w.acts, np.asarray(r["activations"], dtype=np.float32))
        assert w.focus == (int(np.argmax(r["activations"])) if kind == "top" else -1)
        assert w.start == -1
        assert w.left.size == 0


def test_records_evidence_split_vocab_and_stats(dataset):
    root, recs = dataset
    assert "NaN" in (root / "2" / "5.json").read_text()
    records = OpenAIRecords(root)
    assert records.neurons() == [(2, 0), (2, 5), (10, 3)]  # numeric, not lexicographic
    assert records.has(2, 5)
    assert not records.has(2, 6)

    evs = records.evidence(2, [5, 0])
    assert [(e.layer, e.index) for e in evs] == [(2, 5), (2, 0)]
    for ev in evs:
        rec = recs[ev.layer, ev.index]
        train, held = _split(rec)
        _check_windows(ev.train, train, records.vocab)
        _check_windows(ev.heldout, held, records.vocab)
        assert ev.vocab is records.vocab
        assert ev.source == str(root / str(ev.layer) / f"{ev.index}.json")
        top_max = max(max(r["activations"]) for r in rec["most_positive_activation_records"])
        assert ev.stats.keys() == {"mean", "std", "max", "boundary0", "boundary1", "boundary2"}
        assert ev.stats["mean"] == 0.42
        assert ev.stats["std"] == 1.5
        assert ev.stats["max"] == pytest.approx(top_max, rel=1e-6)
        assert [ev.stats[f"boundary{i}"] for i in range(3)] == [0.0, 0.5, 3.9]

    # One vocabulary for the directory: first-seen order over top, quantile, random records, neuron by neuron.
    order = []
    for key in [(2, 5), (2, 0)]:
        rec = recs[key]
        quantile = [r for stratum in rec["random_sample_by_quantile"] for r in stratum]
        for r in [*rec["most_positive_activation_records"], *quantile, *rec["random_sample"]]:
            order += r["tokens"]
    assert records.vocab.pieces == list(dict.fromkeys(order))
    before = list(records.vocab.pieces)
    again = records.evidence(2, [5])[0]  # rereading assigns no new ids
    assert records.vocab.pieces == before
    np.testing.assert_array_equal(again.heldout[0].ids, evs[0].heldout[0].ids)


def test_neurons_subdir_layout_untagged_and_unsorted(tmp_path):
    rec = _neuron_record(7, 11, seed=4, tagged=False, n_top=5)
    rec["most_positive_activation_records"].reverse()  # ascending: ranks must come from the activations
    rec["most_positive_activation_records"].insert(2, {"tokens": [], "activations": []})  # empty: skipped
    _write(tmp_path / "neurons" / "7" / "11.json", rec)
    records = OpenAIRecords(tmp_path)
    assert records.neurons() == [(7, 11)]
    ev = records.evidence(7, [11])[0]
    ranked = sorted((r for r in rec["most_positive_activation_records"] if r["tokens"]),
                    key=lambda r: -max(r["activations"]))
    tops = [w for w in ev.train if w.kind == "top"], [w for w in ev.heldout if w.kind == "top"]
    _check_windows(tops[0], [("top", r) for r in ranked[0::2]], records.vocab)
    _check_windows(tops[1], [("top", r) for r in ranked[1::2]], records.vocab)


def _expected_prediction(tokens: list[str], modes: list[tuple[set[str], float]]) -> list[float]:
    """Plain-Python exec simulation: per token the strongest mode whose token set holds it, else 0."""
    out = []
    for t in tokens:
        key = t.strip().lower()
        out.append(max((s for words, s in modes if key in words), default=0.0))
    return out


def test_imported_neuron_score_equals_numpy_corrcoef(dataset):
    root, recs = dataset
    records = OpenAIRecords(root)
    ev = records.evidence(2, [5])[0]
    exp = Explanation(2, 5, [Mode("early months", conditions=[TokenIn((" January", " February", " March"))],
                                  strength=3.0),
                             Mode("cats", conditions=[TokenIn(("cat",))], strength=1.0)], method="neuronscope")
    res = score_explanations(ev, [exp], ExecSimulator(records.vocab))[0]

    _, held = _split(recs[2, 5])
    modes = [({"january", "february", "march"}, 3.0), ({"cat"}, 1.0)]
    pred = np.concatenate([_expected_prediction(r["tokens"], modes) for _, r in held])
    true = np.concatenate([np.asarray(r["activations"], dtype=np.float32) for _, r in held]).astype(np.float64)
    assert res.n_tokens == true.size
    assert res.score == pytest.approx(np.corrcoef(pred, true)[0, 1], abs=1e-5)


def test_planted_records_perfect_and_wrong_explanations(tmp_path):
    _write(tmp_path / "0" / "0.json",
           _neuron_record(0, 0, seed=5, n_top=20, strata=(10, 10, 10), n_random=20, length=32))
    records = OpenAIRecords(tmp_path)
    ev = records.evidence(0, [0])[0]
    perfect = Explanation(0, 0, [Mode("months", conditions=[TokenIn(tuple(MONTHS))], strength=STRENGTH)])
    wrong = Explanation(0, 0, [Mode("after cat", conditions=[PrevTokenIn((" cat",), 1)], strength=STRENGTH)])
    good, bad = score_explanations(ev, [perfect, wrong], ExecSimulator(records.vocab))
    assert good.score > 0.99
    assert abs(bad.score) < 0.1
    assert good.coverage == 1.0


# Field sets of OpenAI's dataclasses: their loader builds each tagged object with cls(**fields).
OPENAI_FIELDS = {
    "NeuronSimulationResults": ({"neuron_id", "scored_explanations"}, set()),
    "NeuronId": ({"layer_index", "neuron_index"}, set()),
    "ScoredExplanation": ({"explanation", "scored_simulation"}, set()),
    "ScoredSimulation": ({"scored_sequence_simulations"},
                         {"ev_correlation_score", "rsquared_score", "absolute_dev_explained_score"}),
    "ScoredSequenceSimulation": ({"simulation", "true_activations", "ev_correlation_score"},
                                 {"rsquared_score", "absolute_dev_explained_score"}),
    "SequenceSimulation": ({"tokens", "expected_activations", "activation_scale", "distribution_values",
                            "distribution_probabilities"}, {"uncalibrated_simulation"}),
}


def _check_openai_shape(obj: object) -> None:
    if isinstance(obj, list):
        for o in obj:
            _check_openai_shape(o)
    elif isinstance(obj, dict):
        required, optional = OPENAI_FIELDS[obj["dataclass_name"]]
        fields = set(obj) - {"dataclass_name"}
        assert required <= fields <= required | optional, obj["dataclass_name"]
        for v in obj.values():
            _check_openai_shape(v)


def _scored_neuron(dataset):
    root, recs = dataset
    records = OpenAIRecords(root)
    ev = records.evidence(2, [5])[0]
    exps = [Explanation(2, 5, [Mode("months", "month names", [TokenIn(tuple(MONTHS))], strength=STRENGTH)],
                        method="neuronscope"),
            Explanation(2, 5, [Mode("the", conditions=[TokenIn(("the",))])], method="single-pass",
                        text='the word "the" … café')]
    sim = ExecSimulator(records.vocab)
    results = score_explanations(ev, exps, sim)
    batch = WindowBatch.build(ev.heldout)
    return records, recs, ev, exps, results, batch, sim.simulate(exps, batch)


def test_openai_export_shape_and_round_trip(dataset, tmp_path):
    records, recs, _ev, exps, results, batch, sims = _scored_neuron(dataset)
    out = tmp_path / "explanations"
    for e, r, s in zip(exps, results, sims, strict=True):
        path = export_openai(out, e, r, batch, s, vocab=records.vocab)
    assert path == out / "2" / "5.jsonl"
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert len(lines) == 1  # OpenAI's reader asserts one line per neuron file
    obj = json.loads(lines[0])
    _check_openai_shape(obj)
    assert obj["neuron_id"] == {"dataclass_name": "NeuronId", "layer_index": 2, "neuron_index": 5}
    scored = obj["scored_explanations"]
    assert [s["explanation"] for s in scored] == ["month names", 'the word "the" … café']

    _, held = _split(recs[2, 5])
    for s, res, mode_words in zip(scored, results, [{m.strip().lower() for m in MONTHS}, {"the"}], strict=True):
        sim = s["scored_simulation"]
        assert sim["ev_correlation_score"] == pytest.approx(res.score, abs=1e-7)
        assert sim["rsquared_score"] is None
        assert sim["absolute_dev_explained_score"] is None
        seqs = sim["scored_sequence_simulations"]
        assert len(seqs) == len(held)
        strength = STRENGTH if "january" in mode_words else 1.0
        for seq, (_, r) in zip(seqs, held, strict=True):
            assert seq["simulation"]["tokens"] == r["tokens"]
            assert seq["simulation"]["activation_scale"] == "neuron_activations"
            np.testing.assert_array_equal(np.float32(seq["true_activations"]), np.float32(r["activations"]))
            pred = _expected_prediction(r["tokens"], [(mode_words, strength)])
            assert seq["simulation"]["expected_activations"] == pred
            if np.std(pred) == 0:  # undefined: null, as OpenAI's orjson writes its NaN
                assert seq["ev_correlation_score"] is None
            else:
                want = np.corrcoef(pred, np.float32(r["activations"]))[0, 1]
                assert seq["ev_correlation_score"] == pytest.approx(want, abs=1e-6)

    # Re-exporting an explanation replaces its entry; without a batch no sequences are written.
    export_openai(out, exps[0], results[0])
    again = json.loads(path.read_text(encoding="utf-8"))["scored_explanations"]
    assert len(again) == 2
    assert again[0]["scored_simulation"]["scored_sequence_simulations"] == []

    back = read_openai_explanations(out)
    assert [(e.layer, e.index, e.method, e.text, e.modes) for e in back] == \
        [(2, 5, "openai", "month names", []), (2, 5, "openai", 'the word "the" … café', [])]
    for e, res in zip(back, results, strict=True):
        assert e.scores["score"] == pytest.approx(res.score, abs=1e-7)
        assert Explanation.from_dict(e.to_dict()).text == e.text


def test_openai_export_rejects_mismatches(dataset, tmp_path):
    _records, _recs, _ev, exps, results, batch, sims = _scored_neuron(dataset)
    with pytest.raises(ConfigError, match="both batch and sims"):
        export_openai(tmp_path, exps[0], results[0], batch)
    with pytest.raises(ConfigError, match="needs the vocab"):
        export_openai(tmp_path, exps[0], results[0], batch, sims[0])
    other = Explanation(3, 1, [], text="x")
    with pytest.raises(ConfigError, match="neuron 2/5"):
        export_openai(tmp_path, other, results[0])


def test_delphi_export_and_read(dataset, tmp_path):
    records, _recs, ev, exps, results, batch, sims = _scored_neuron(dataset)
    ev0 = records.evidence(2, [0])[0]
    other = Explanation(2, 0, [Mode("months", conditions=[TokenIn(tuple(MONTHS))], strength=STRENGTH)])
    res0 = score_explanations(ev0, [other], ExecSimulator(records.vocab))[0]
    out = tmp_path / "run"
    written = export_delphi(out, [exps[1], other], [results[1], res0], simulations=[(batch, sims[1]), None],
                            vocab=records.vocab)
    name5, name0 = "layers.2.mlp_latent5.txt", "layers.2.mlp_latent0.txt"
    assert written == [out / "explanations" / name5, out / "scores" / "simulation" / name5,
                       out / "scores" / "detection" / name5, out / "explanations" / name0,
                       out / "scores" / "simulation" / name0, out / "neuronscope_export.json"]
    assert (out / "explanations" / name5).read_text(encoding="utf-8") == json.dumps(exps[1].summary,
                                                                                    ensure_ascii=False)
    groups = json.loads((out / "scores" / "simulation" / name5).read_text(encoding="utf-8"))
    overall = next(g for g in groups if g["distance"] == 0)
    assert len(overall["scored_sequence_simulations"]) == len(ev.heldout)
    assert [s["simulation"]["tokens"] for s in overall["scored_sequence_simulations"]] == \
        [[records.vocab.pieces[i] for i in w.ids] for w in ev.heldout]
    assert overall["ev_correlation_score"] == pytest.approx(results[1].score, abs=1e-6)
    windows = json.loads((out / "scores" / "detection" / name5).read_text(encoding="utf-8"))
    assert [w["activating"] for w in windows] == [w.kind == "top" for w in ev.heldout]
    # Without the per-window simulations: the overall record alone, and no detection file.
    summary = json.loads((out / "scores" / "simulation" / name0).read_text(encoding="utf-8"))
    assert [g["distance"] for g in summary] == [0]
    assert summary[0]["scored_sequence_simulations"] == []
    assert summary[0]["ev_correlation_score"] == pytest.approx(res0.score)

    # delphi's own classifier scorers' files carry no correlation: read past them.
    (out / "scores" / "fuzz").mkdir()
    (out / "scores" / "fuzz" / name5).write_text(json.dumps([{"str_tokens": ["a"], "prediction": True}]))
    back = read_delphi_explanations(out)
    assert [(e.layer, e.index, e.method, e.text) for e in back] == \
        [(2, 0, "delphi", other.summary), (2, 5, "delphi", exps[1].summary)]
    assert back[0].scores == pytest.approx({"simulation": res0.score, "score": res0.score}, abs=1e-6)
    assert back[1].scores == pytest.approx({"simulation": results[1].score, "score": results[1].score}, abs=1e-6)

    with pytest.raises(ConfigError, match="one explanation per latent"):
        export_delphi(tmp_path / "dup", exps, results)
    with pytest.raises(ConfigError, match="delphi scorers must be some of simulation, detection"):
        export_delphi(tmp_path / "bad", [other], [res0], scorers=("fuzz",))


def _corrupt(rec: dict, how: str) -> dict | str:
    top = rec["most_positive_activation_records"]
    if how == "json":
        return "{not json"
    if how == "length":
        top[0]["activations"].pop()
    elif how == "string":
        top[0]["activations"][1] = "x"
    elif how == "nan":
        top[0]["activations"][1] = math.nan
    elif how == "no_tokens":
        del top[0]["tokens"]
    elif how == "tag":
        top[0]["dataclass_name"] = "NeuronId"
    elif how == "neuron_id":
        rec["neuron_id"]["neuron_index"] = 99
    elif how == "quantiles":
        rec["random_sample_by_quantile"] = {"0": []}
    elif how == "moment":
        rec["variance"] = "big"
    return rec


@pytest.mark.parametrize(("how", "message"), [
    ("json", r"1\.json: not a valid JSON NeuronRecord"),
    ("length", r"1\.json: most_positive_activation_records\[0\] has 16 tokens but 15 activations"),
    ("string", r"most_positive_activation_records\[0\]\.activations\[1\] must be a finite number, got 'x'"),
    ("nan", r"most_positive_activation_records\[0\]\.activations\[1\] must be a finite number, got nan"),
    ("no_tokens", r"most_positive_activation_records\[0\]\.tokens must be a list of strings"),
    ("tag", r"most_positive_activation_records\[0\]: dataclass_name is 'NeuronId', expected 'ActivationRecord'"),
    ("neuron_id", r"neuron_id is layer 2 neuron 99 but the file is for 2/1"),
    ("quantiles", r"random_sample_by_quantile must be a list"),
    ("moment", r"1\.json: variance must be a number or null"),
])
def test_bad_records_raise_store_errors(tmp_path, how, message):
    rec = _corrupt(_neuron_record(2, 1, seed=6), how)
    path = tmp_path / "2" / "1.json"
    if isinstance(rec, str):
        path.parent.mkdir(parents=True)
        path.write_text(rec)
    else:
        _write(path, rec)
    records = OpenAIRecords(tmp_path)
    with pytest.raises(StoreError, match=message):
        records.evidence(2, [1])
    assert len(records.vocab) == 0  # nothing of a rejected file reaches the shared vocabulary


def test_missing_inputs_raise_named_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        OpenAIRecords(tmp_path / "nope")
    with pytest.raises(StoreError, match=r"holds no <layer>/<neuron>\.json"):
        OpenAIRecords(tmp_path).neurons()
    _write(tmp_path / "2" / "1.json", _neuron_record(2, 1, seed=7))
    with pytest.raises(StoreError, match=r"no NeuronRecord for neuron 2/9 .*9\.json"):
        OpenAIRecords(tmp_path).evidence(2, [9])
    with pytest.raises(ExplanationError, match="does not exist"):
        read_openai_explanations(tmp_path / "nope")
    with pytest.raises(ExplanationError, match="does not exist"):
        read_delphi_explanations(tmp_path / "nope")
    bad = tmp_path / "exp" / "3" / "4.jsonl"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"dataclass_name": "NeuronSimulationResults", "scored_explanations": [')
    with pytest.raises(ExplanationError, match=r"4\.jsonl:1: not valid JSON"):
        read_openai_explanations(tmp_path / "exp")
    bad.write_text(json.dumps({"neuron_id": {"layer_index": 3, "neuron_index": 4},
                               "scored_explanations": [{"explanation": 5}]}))
    with pytest.raises(ExplanationError, match=r"scored_explanations\[0\]\.explanation must be a string"):
        read_openai_explanations(tmp_path / "exp")


def test_score_cli_source_accepts_records(dataset, tmp_path):
    from neuronscope.scoring.run import open_source, score_file

    root, _ = dataset
    exp = Explanation(2, 5, [Mode("months", conditions=[TokenIn(tuple(MONTHS))], strength=STRENGTH)])
    rows = score_file(open_source(records=root), [exp], tmp_path / "scores.jsonl", progress=False)
    records = OpenAIRecords(root)
    want = score_explanations(records.evidence(2, [5])[0], [exp], ExecSimulator(records.vocab))
    assert len(rows) == 1
    assert rows[0]["score"] == pytest.approx(want[0].score, abs=1e-6)
