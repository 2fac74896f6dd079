"""Messages say what is wrong and what to do (issue 17 item 20): ``report`` given a file that is not an explain
output no longer says "choose another --out" (it has no --out to change), and Ctrl-C during ``report`` no
longer promises a checkpoint that a report does not have."""

from __future__ import annotations

import json

import pytest

from neuronscope import cli
from neuronscope.explanations import Explanation, Mode, TokenIn, write_explanations


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    (run / "store").mkdir(parents=True)
    (run / "store" / "manifest.json").write_text("{}")  # never opened: the explanations file is read first
    return run


def _report(run, expl, capsys) -> tuple[int, str]:
    code = cli.main(["report", "--run", str(run), "--explanations", str(expl), "--quiet"])
    return code, capsys.readouterr().err


def test_report_on_a_file_that_is_not_json_names_the_line_and_the_file_to_give(run_dir, tmp_path, capsys):
    bad = tmp_path / "notes.jsonl"
    bad.write_text('\nthis is not JSON\n')
    code, err = _report(run_dir, bad, capsys)
    assert code == 2
    assert "choose another --out" not in err
    assert f"{bad}:2 is not JSON" in err
    assert "not an explanations file" in err
    assert "give --explanations the .jsonl that `neuronscope explain`" in err


def test_report_on_bare_explanations_says_it_reads_explain_rows(run_dir, tmp_path, capsys):
    bare = tmp_path / "bare.jsonl"
    write_explanations(bare, [Explanation(0, 1, [Mode("m", conditions=[TokenIn(("a",))])])])
    code, err = _report(run_dir, bare, capsys)
    assert code == 2
    assert f"{bare}:1 has no 'explanation' object" in err
    assert "not bare explanations" in err


def test_report_on_a_binary_file_says_it_is_not_text(run_dir, tmp_path, capsys):
    blob = tmp_path / "explanations.jsonl"
    blob.write_bytes(b"\x93NUMPY\x01\x00\xff\xfe garbage")
    code, err = _report(run_dir, blob, capsys)
    assert code == 2
    assert "is not an explanations file (it is not UTF-8 text)" in err


def test_report_names_an_invalid_explanation_before_any_work(run_dir, tmp_path, capsys):
    bad = tmp_path / "expl.jsonl"
    row = {"layer": 0, "index": 1, "method": "manual", "explanation": {
        "schema": 2, "layer": 0, "index": 1,
        "modes": [{"label": "x", "conditions": [{"kind": "preceding_regex", "pattern": "(.|.)*!"}]}]}}
    bad.write_text(json.dumps(row) + "\n")
    code, err = _report(run_dir, bad, capsys)
    assert code == 2
    assert "expl.jsonl:1.modes[0].conditions[0].pattern '(.|.)*!' is too slow" in err


def test_report_with_only_failed_neurons_says_to_rerun_explain(run_dir, tmp_path, capsys):
    failed = tmp_path / "expl.jsonl"
    failed.write_text(json.dumps({"layer": 0, "index": 1, "method": "neuronscope", "error": "LLMTimeout: …"}) + "\n")
    code, err = _report(run_dir, failed, capsys)
    assert code == 2
    assert "only failed neurons" in err
    assert "rerun `neuronscope explain`" in err


def test_ctrl_c_during_report_says_the_report_is_rebuilt_not_resumed(run_dir, monkeypatch, capsys):
    import neuronscope.report.build as build

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "build_report", interrupted)
    assert cli.main(["report", "--run", str(run_dir), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "resume from the last checkpoint" not in err
    assert "the report was not finished" in err
    assert "rerun the same command to build it whole" in err


@pytest.mark.parametrize(("command", "says"), [("mine", "last checkpoint"), ("explain", "only the missing neurons"),
                                               ("merge", "nothing is resumed")])
def test_ctrl_c_messages_fit_the_command(command, says):
    assert says in cli.INTERRUPTED.get(command, cli._INTERRUPTED_OTHER)
