"""Hostile OpenAI NeuronRecord directories and explanation files (issue 17 item 15): every case is a named
StoreError / ExplanationError, never an OverflowError, RecursionError, a duplicate row or a silent link."""

from __future__ import annotations

import json

import pytest

from neuronscope.errors import ExplanationError, StoreError
from neuronscope.interop import OpenAIRecords, read_openai_explanations
from test_interop import _neuron_record, _write

HUGE = 10**400  # json writes it; float() and math.isfinite() raise OverflowError on it


@pytest.mark.parametrize(("field", "message"), [
    ("activations", r"2/1\.json: most_positive_activation_records\[0\]\.activations\[3\] is a number too large "
                    r"for a float \(401 digits\)"),
    ("f32", r"2/1\.json: most_positive_activation_records\[0\]\.activations\[3\] is 1e\+39, beyond float32 range"),
    ("mean", r"2/1\.json: mean is a number too large for a float"),
    ("boundary", r"2/1\.json: quantile_boundaries\[1\] is a number too large for a float"),
])
def test_numbers_beyond_float_range_are_named_errors(tmp_path, field, message):
    rec = _neuron_record(2, 1, seed=3)
    if field == "activations":
        rec["most_positive_activation_records"][0]["activations"][3] = HUGE
    elif field == "f32":
        rec["most_positive_activation_records"][0]["activations"][3] = 10**39  # inf as float32
    elif field == "mean":
        rec["mean"] = HUGE
    else:
        rec["quantile_boundaries"][1] = HUGE
    _write(tmp_path / "2" / "1.json", rec)
    with pytest.raises(StoreError, match=message):
        OpenAIRecords(tmp_path).evidence(2, [1])


def test_deep_nesting_and_digit_limit_are_named_errors(tmp_path):
    f = tmp_path / "2" / "1.json"
    f.parent.mkdir()
    f.write_text('{"random_sample": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(StoreError, match=r"2/1\.json: not a valid JSON NeuronRecord \(maximum recursion depth"):
        OpenAIRecords(tmp_path).evidence(2, [1])
    f.write_text('{"mean": ' + "7" * 5000 + "}")
    with pytest.raises(StoreError, match=r"2/1\.json: not a valid JSON NeuronRecord \(Exceeds the limit"):
        OpenAIRecords(tmp_path).evidence(2, [1])
    exp = tmp_path / "exp" / "3" / "4.jsonl"
    exp.parent.mkdir(parents=True)
    exp.write_text('{"scored_explanations": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ExplanationError, match=r"4\.jsonl:1: not valid JSON \(maximum recursion depth"):
        read_openai_explanations(tmp_path / "exp")


def test_huge_explanation_score_is_a_named_error(tmp_path):
    exp = tmp_path / "3" / "4.jsonl"
    _write(exp, {"scored_explanations": [{"explanation": "x", "scored_simulation": {"ev_correlation_score": HUGE}}]})
    with pytest.raises(ExplanationError, match=r"4\.jsonl:1: scored_explanations\[0\]\.scored_simulation\."
                                               r"ev_correlation_score is a number too large for a float"):
        read_openai_explanations(tmp_path)


def test_leading_zeros_are_refused_not_duplicated_or_lost(tmp_path):
    _write(tmp_path / "0" / "1.json", _neuron_record(0, 1, seed=1))
    _write(tmp_path / "0" / "01.json", _neuron_record(0, 1, seed=2))  # was a second (0, 1) row
    with pytest.raises(StoreError, match=r"0/01\.json: layer and neuron numbers must have no leading zeros "
                                         r"\(rename it to 1\)"):
        OpenAIRecords(tmp_path).neurons()
    (tmp_path / "0" / "01.json").unlink()
    _write(tmp_path / "00" / "3.json", _neuron_record(0, 3, seed=3))  # was listed, then "not found"
    with pytest.raises(StoreError, match=r"/00: layer and neuron numbers must have no leading zeros"):
        OpenAIRecords(tmp_path).neurons()
    _write(tmp_path / "exp" / "02" / "4.jsonl", {"scored_explanations": []})
    with pytest.raises(ExplanationError, match=r"exp/02: layer and neuron numbers must have no leading zeros"):
        read_openai_explanations(tmp_path / "exp")


def test_symlink_out_of_the_directory_is_refused_links_within_are_read(tmp_path):
    root, outside = tmp_path / "records", tmp_path / "elsewhere"
    _write(outside / "secret.json", _neuron_record(0, 2, seed=4))
    _write(root / "0" / "1.json", _neuron_record(0, 1, seed=5))
    (root / "0" / "3.json").symlink_to(root / "0" / "1.json")  # inside: followed
    records = OpenAIRecords(root)
    assert records.neurons() == [(0, 1), (0, 3)]
    with pytest.raises(StoreError, match="neuron_id is layer 0 neuron 1 but the file is for 0/3"):
        records.evidence(0, [3])  # followed, and checked like any file
    (root / "0" / "2.json").symlink_to(outside / "secret.json")
    with pytest.raises(StoreError, match=r"0/2\.json links to .*elsewhere/secret\.json, outside .*records: refused"):
        OpenAIRecords(root).neurons()
    with pytest.raises(StoreError, match=r"0/2\.json links to .*outside .*records: refused"):
        OpenAIRecords(root).evidence(0, [2])  # asked for directly, without listing
    (root / "0" / "2.json").unlink()
    (root / "5").symlink_to(outside, target_is_directory=True)
    (outside / "7.json").write_text(json.dumps(_neuron_record(5, 7, seed=6)))
    with pytest.raises(StoreError, match=r"records/5 links to .*elsewhere, outside"):
        OpenAIRecords(root).neurons()
    with pytest.raises(StoreError, match=r"records/5 links to .*elsewhere, outside"):
        OpenAIRecords(root).evidence(5, [7])
