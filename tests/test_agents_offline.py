"""The offline NeuronScope loop and the single-pass baseline: planted modes, a real MiniLM store, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuronscope.agents import OfflineConfig, OfflineNeuronScope, single_pass
from neuronscope.agents.baseline import top_tokens
from neuronscope.explanations import AllOf, ConditionEvaluator, Mode, PrevTokenIn, TokenIn, TokenRegex, Vocab
from neuronscope.scoring import ExecSimulator, NeuronEvidence, Window, score_explanations

DIGIT_AFTER_BRACKET = AllOf((TokenRegex(r"^\d+$"), PrevTokenIn(("(", "["), 1)))


@pytest.fixture(scope="module")
def planted():
    """Two unrelated modes on real pydoc text: 'return'/'value' (strong) and a digit after '(' or '[' (weaker)."""
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer

    from neuronscope.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    vocab = Vocab.from_tokenizer(tok)
    ev = ConditionEvaluator(vocab)
    mode_a = Mode("a", conditions=[TokenIn(("return", "value"))])
    mode_b = Mode("b", conditions=[DIGIT_AFTER_BRACKET])
    rng = np.random.default_rng(0)
    text = "\n\n".join(topics[k] for k in sorted(topics))
    ids_all = np.asarray(tok(text[:400_000], add_special_tokens=False)["input_ids"], dtype=np.int64)
    t_ids, seg = torch.from_numpy(ids_all), torch.zeros(len(ids_all), dtype=torch.int64)
    a = ev.evaluate_mode(mode_a, t_ids, seg).numpy()
    b = ev.evaluate_mode(mode_b, t_ids, seg).numpy()
    acts = (3.0 * a + 1.5 * b + rng.normal(0, 0.05, len(ids_all))).astype(np.float32)

    def window(p: int, kind: str) -> Window:
        lo, hi = max(0, p - 12), min(len(ids_all), p + 5)
        return Window(ids=ids_all[lo:hi], acts=acts[lo:hi], kind=kind, focus=p - lo if kind == "top" else -1,
                      start=lo, left=ids_all[max(0, lo - 32) : lo])

    top_a = rng.choice(np.flatnonzero(a), 20, replace=False)
    top_b = rng.choice(np.flatnonzero(b), 20, replace=False)
    tops = sorted(np.concatenate([top_a, top_b]).tolist(), key=lambda p: -acts[p])
    rand = rng.choice(len(ids_all), 60, replace=False).tolist()
    wins = [window(p, "top") for p in tops]
    rwins = [window(p, "random") for p in rand]
    evidence = NeuronEvidence(0, 0, vocab, train=wins[0::2] + rwins[0::2], heldout=wins[1::2] + rwins[1::2],
                              stats={"max": float(acts.max())})
    return evidence, ev


def test_offline_loop_recovers_planted_modes(planted):
    evidence, ev = planted
    res = OfflineNeuronScope(evidence, evaluator=ev, cfg=OfflineConfig(rounds=3)).run()
    sp = top_tokens(evidence)  # the strawman single pass (top tokens, one strength)
    table = single_pass(evidence)  # the strong one: a token look-up table with strengths
    e = res.explanation
    scores = score_explanations(evidence, [e, sp.explanation, table.explanation],
                                ExecSimulator(evidence.vocab, ev))
    assert scores[0].score > 0.9, e.to_dict()
    assert scores[0].score > scores[1].score + 0.05
    assert scores[0].score > scores[2].score  # a token table cannot express "a digit after a bracket"
    assert len(e.modes) == 2
    # the strongest mode is the 'return'/'value' one, the other the digit-after-bracket context
    # (graded: one condition per atom, each with its own strength)
    assert sorted(t for c in e.modes[0].conditions for t in c.tokens) == ["return", "value"]
    assert all(isinstance(c, TokenIn) for c in e.modes[0].conditions)
    assert e.modes[0].strength == pytest.approx(3.0, abs=0.1)
    assert e.modes[1].strength == pytest.approx(1.5, abs=0.1)
    # the second mode picks out the digit-after-bracket tokens: IoU ≥ 0.5 with the true mode on held-out windows
    from neuronscope.scoring import WindowBatch

    held = WindowBatch.build(evidence.heldout)
    truth = ev.evaluate(DIGIT_AFTER_BRACKET, held.ids, held.seg)[held.scored]
    found = ev.evaluate_mode(e.modes[1], held.ids, held.seg)[held.scored]
    assert int((truth & found).sum()) / int((truth | found).sum()) >= 0.5
    roles = [t["role"] for t in res.transcript]
    assert roles[:3] == ["hypothesis", "decomposition", "mode clustering"]
    assert "refinement" in roles
    assert res.round_scores[0]["round"] == 0
    assert all("train_score" in r for r in res.round_scores)
    assert len(sp.explanation.modes) == 1
    assert sp.explanation.method == "top-tokens"
    assert len(table.explanation.modes) == 1
    assert table.explanation.method == "single-pass"


def test_explain_cli_end_to_end_resume_score_export(minilm_store, tmp_path, monkeypatch, capsys):
    from neuronscope.cli import main

    out = tmp_path / "exp.jsonl"
    args = ["explain", "--store", str(minilm_store.path), "--neurons", "1:0-2,3:7", "--method",
            "neuronscope,single-pass", "--rounds", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["layer"], r["index"], r["method"]) for r in rows) == sorted(
        (layer, i, m) for layer, i in [(1, 0), (1, 1), (1, 2), (3, 7)] for m in ("neuronscope", "single-pass"))
    ns_rows = [r for r in rows if r["method"] == "neuronscope"]
    for r in ns_rows:
        assert r["explanation"]["modes"]
        assert r["heldout"] is not None
        assert -1 <= r["heldout"]["score"] <= 1
        assert r["rounds"]
        assert r["transcript"]
        assert len(r["heldout"]["mode_scores"]) == len(r["explanation"]["modes"])
    assert any(len(r["explanation"]["modes"]) >= 2 for r in ns_rows)

    # Resume: nothing is recomputed.
    def boom(*a, **k):
        raise AssertionError("recomputed a finished neuron")

    import neuronscope.agents.baseline as single_pass_module

    monkeypatch.setattr(single_pass_module, "single_pass", boom)
    monkeypatch.setattr(OfflineNeuronScope, "run", boom)
    before = out.read_text()
    assert main(args) == 0
    assert out.read_text() == before
    monkeypatch.undo()

    # `score` on the explain output reproduces the held-out scores (same seed → same held-out windows).
    scores = tmp_path / "scores.jsonl"
    assert main(["score", "--store", str(minilm_store.path), "--explanations", str(out), "--out", str(scores),
                 "--quiet"]) == 0
    got = {(r["layer"], r["index"], r["method"]): r["score"] for r in map(json.loads, scores.read_text().splitlines())}
    for r in rows:
        assert got[(r["layer"], r["index"], r["method"])] == pytest.approx(r["heldout"]["score"], abs=1e-6)

    assert main(["export", "--store", str(minilm_store.path), "--explanations", str(out), "--format", "openai",
                 "--out", str(tmp_path / "oa")]) == 0
    line = json.loads((tmp_path / "oa" / "1" / "0.jsonl").read_text())
    assert line["dataclass_name"] == "NeuronSimulationResults"
    assert len(line["scored_explanations"]) == 2
    capsys.readouterr()


def test_explain_rejects_bad_specs(minilm_store, tmp_path):
    from neuronscope.cli import main

    for spec in ("9:1", "1:99999", "garbage", "sample:999999"):
        assert main(["explain", "--store", str(minilm_store.path), "--neurons", spec, "--out",
                     str(tmp_path / "x.jsonl"), "--quiet"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["explain", "--store", str(minilm_store.path), "--neurons", "1:0", "--out", str(bad), "--quiet"]) == 2
    assert bad.read_text() == "{not json\n"  # nothing overwritten
