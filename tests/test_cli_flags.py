"""One meaning per CLI flag: ``--model`` is the subject and ``--backend`` the miner; ``--explain-backend``,
``--llm-model`` and ``--method`` everywhere; the previous spellings still work for one release and warn on
stderr; the LLM options are declared and assembled once."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuronscope.cli import build_parser, llm_config, main

LLM_FLAGS = ["--base-url", "http://h:1/v1", "--llm-model", "m7", "--api-key-env", "K", "--concurrency", "3",
             "--llm-timeout", "30", "--llm-retries", "2", "--llm-max-tokens", "256"]
LLM_WANT = {"base_url": "http://h:1/v1", "model": "m7", "api_key_env": "K", "concurrency": 3, "timeout_s": 30.0,
            "max_retries": 2, "max_tokens": 256}
SOURCE = {"run": [], "explain": ["--store", "s", "--out", "o"], "score": ["--store", "s", "--explanations", "e"],
          "eval": []}


def _parse(capsys, *argv: str):
    args = build_parser().parse_args(list(argv))
    return args, capsys.readouterr().err


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "explain", "score", "eval"])
def test_llm_options_are_the_same_group_everywhere(capsys, command):
    args, err = _parse(capsys, command, *SOURCE[command], *LLM_FLAGS)
    assert err == ""
    assert llm_config(args) == LLM_WANT
    args, _ = _parse(capsys, command, *SOURCE[command])
    # Unset client settings are left to the client's defaults.
    assert llm_config(args) == {"base_url": "http://localhost:8000/v1", "model": None,
                                "api_key_env": "OPENAI_API_KEY", "concurrency": 8}
    text = _help(capsys, command)
    assert "LLM server" in text
    assert "--llm-model" in text
    assert "--llm-timeout" in text


@pytest.mark.parametrize("command", ["explain", "score", "eval"])
def test_deprecated_model_still_sets_the_llm_model_and_warns(capsys, command):
    args, err = _parse(capsys, command, *SOURCE[command], "--model", "old-name")
    assert args.llm_model == "old-name"
    assert "--model is deprecated, use --llm-model" in err
    args, err = _parse(capsys, command, *SOURCE[command], "--llm-model", "new-name")
    assert args.llm_model == "new-name"
    assert err == ""
    help_text = _help(capsys, command)
    assert "--model " not in help_text  # hidden: one spelling is documented


@pytest.mark.parametrize("command", ["explain", "eval"])
def test_deprecated_backend_still_sets_the_explain_backend_and_warns(capsys, command):
    args, err = _parse(capsys, command, *SOURCE[command], "--backend", "openai")
    assert args.explain_backend == "openai"
    assert "--backend is deprecated, use --explain-backend" in err
    args, err = _parse(capsys, command, *SOURCE[command], "--explain-backend", "openai")
    assert args.explain_backend == "openai"
    assert err == ""
    args, _ = _parse(capsys, command, *SOURCE[command])
    assert args.explain_backend == "offline"
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, *SOURCE[command], "--backend", "triton"])  # the old choices hold
    assert "invalid choice: 'triton'" in capsys.readouterr().err


def test_deprecated_methods_in_eval(capsys):
    args, err = _parse(capsys, "eval", "--methods", "neuronscope")
    assert args.method == "neuronscope"
    assert "--methods is deprecated, use --method" in err
    args, err = _parse(capsys, "eval", "--method", "single-pass")
    assert (args.method, err) == ("single-pass", "")
    assert _parse(capsys, "eval")[0].method == "top-tokens,single-pass,neuronscope"


@pytest.mark.parametrize("command", ["mine", "run"])
def test_model_is_the_subject_and_backend_the_miner(capsys, command):
    extra = ["--out", "o"] if command == "mine" else []
    args, err = _parse(capsys, command, *extra, "--model", "sub", "--backend", "cpu")
    assert (args.model, args.backend, err) == ("sub", "cpu", "")
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, *extra, "--backend", "openai"])


def test_method_on_export_and_score(capsys):
    args, _ = _parse(capsys, "export", "--store", "s", "--explanations", "e", "--format", "delphi", "--out", "o",
                     "--method", "neuronscope")
    assert args.method == "neuronscope"
    assert args.delphi_scorers == "simulation,detection"
    args, _ = _parse(capsys, "score", "--store", "s", "--explanations", "e", "--method", "single-pass")
    assert args.method == "single-pass"
    assert _parse(capsys, "score", "--store", "s", "--explanations", "e")[0].method is None


def test_deprecated_spellings_reach_the_stage_function(monkeypatch, tmp_path, capsys):
    import neuronscope.eval

    seen = {}

    def fake_evaluate(suite, methods, *, backend, out, llm, **kw):
        seen.update(suite=suite, methods=methods, backend=backend, llm=llm)
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "eval.md").write_text("table\n")
        return {}

    monkeypatch.setattr(neuronscope.eval, "evaluate", fake_evaluate)
    out = str(tmp_path / "ev")
    assert main(["eval", "--suite", "planted", "--methods", "single-pass", "--backend", "openai", "--model", "m",
                 "--llm-timeout", "5", "--out", out]) == 0
    cap = capsys.readouterr()
    assert cap.err.count("is deprecated") == 3
    assert seen == {"suite": "planted", "methods": ["single-pass"], "backend": "openai",
                    "llm": {"base_url": "http://localhost:8000/v1", "model": "m", "api_key_env": "OPENAI_API_KEY",
                            "concurrency": 8, "timeout_s": 5.0}}
    assert main(["eval", "--suite", "planted", "--out", out]) == 0
    assert seen["backend"] == "offline"
    assert seen["llm"] is None  # the offline explainer gets no LLM settings
    assert capsys.readouterr().err == ""


def test_allow_pickle_is_offered_wherever_a_model_is_named_and_reaches_the_loader(monkeypatch, tmp_path,
                                                                                   sp_tokenizer):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    with_model = {n for n, p in sub.choices.items() if any("--model" in a.option_strings for a in p._actions)}
    with_flag = {n for n, p in sub.choices.items() if any("--allow-pickle" in a.option_strings for a in p._actions)}
    assert {"mine", "run"} <= with_model
    assert with_model == with_flag
    # A directory holding only pickle weights: refused by default, loaded once the flag is given.
    import torch
    from safetensors.torch import load_file

    from conftest import tiny_subject

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NEURONSCOPE_ALLOW_PICKLE", "0")  # off; restored after the test (main sets it to 1)
    model_dir = tmp_path / "bin_only"
    tiny_subject("llama", sp_tokenizer).model.save_pretrained(model_dir)
    sp_tokenizer.save_pretrained(model_dir)
    torch.save(load_file(model_dir / "model.safetensors"), model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    seen = {}

    def fake_mine(model, corpus, out, **kw):
        from neuronscope.models import load_subject

        try:
            seen["type"] = load_subject(model).model_type
        except Exception as e:
            seen["error"] = str(e)
        raise SystemExit(0)

    import neuronscope.mining.run as run

    monkeypatch.setattr(run, "mine", fake_mine)
    args = ["mine", "--model", str(model_dir), "--corpus", "pydoc", "--out", str(tmp_path / "s")]
    with pytest.raises(SystemExit):
        main(args)
    assert "pickle" in seen.pop("error")
    with pytest.raises(SystemExit):
        main([*args, "--allow-pickle"])
    assert seen == {"type": "llama"}
