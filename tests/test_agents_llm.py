"""The NeuronScope loop with an LLM, against a scripted OpenAI-compatible server on a real socket."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from llm_server import Reply, ScriptedServer, chat_body
from neuronscope.agents.llm_agents import LLMNeuronScope, run_llm_explain
from neuronscope.agents.offline import OfflineConfig, single_pass
from neuronscope.llm import LLMClient, LLMConfig
from neuronscope.scoring import ExecSimulator, score_explanations
from test_agents_offline import planted  # noqa: F401  (fixture)

RETURN = {"kind": "token", "tokens": ["return", "value"]}
DIGIT = {"kind": "all", "conditions": [{"kind": "token_regex", "pattern": "^\\d+$"},
                                       {"kind": "prev_token", "tokens": ["(", "["], "offset": 1}]}


def fake_llm(fail_neuron: str | None = None):
    """Answers each role's prompt like a competent model would (and garbage for ``fail_neuron``)."""

    def respond(req) -> Reply:
        msgs = req.body["messages"]
        system, user = msgs[0]["content"], msgs[1]["content"]
        if fail_neuron and re.search(rf"[Nn]euron {re.escape(fail_neuron)}\b", user):
            return Reply(json=chat_body("I am not sure what this neuron does {"))
        if "List every distinct pattern" in user:
            out = {"hypotheses": ["the words return and value", "numbers inside brackets"]}
        elif "atomic conditions" in system:
            out = {"components": [{"hypothesis": "return/value", "condition": RETURN},
                                  {"hypothesis": "numbers", "condition": {"kind": "token_regex", "pattern": "^\\d+$"}},
                                  {"hypothesis": "bad", "condition": {"kind": "nonsense"}}]}
        elif "one semantic mode" in system:
            out = {"label": "return/value" if "return" in user else "bracketed numbers",
                   "description": "the words return or value" if "return" in user else "a number after ( or ["}
        elif "refine explanations" in system:
            out = {"modes": [{"label": "return/value", "description": "the words return or value",
                              "conditions": [RETURN]},
                             {"label": "bracketed numbers", "description": "a number right after ( or [",
                              "conditions": [DIGIT]}],
                   "probes": ["It will return the value (3) and [4].", "Nothing to see here."]}
        elif "activates most" in user:
            out = {"description": "the word return", "conditions": [{"kind": "token", "tokens": ["return"]}]}
        else:
            return Reply(status=400, json={"error": {"message": "unexpected prompt"}})
        return Reply(json=chat_body(json.dumps(out)))

    return respond


def _config(server: ScriptedServer, **kw) -> LLMConfig:
    return LLMConfig(base_url=server.url, model="scripted", backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5,
                     **kw)


def test_llm_loop_recovers_planted_modes(planted):  # noqa: F811
    evidence, ev = planted

    async def go():
        async with LLMClient(_config(server)) as client:
            res = await LLMNeuronScope(evidence, client, evaluator=ev, cfg=OfflineConfig(rounds=3)).arun()
            return res, client.usage.summary()

    with ScriptedServer(default=fake_llm()) as server:
        res, usage = asyncio.run(go())
    e = res.explanation
    sp = single_pass(evidence)
    s = score_explanations(evidence, [e, sp.explanation], ExecSimulator(evidence.vocab, ev))
    assert s[0].score > 0.95
    assert s[0].score > s[1].score
    assert len(e.modes) == 2
    assert {m.label for m in e.modes} == {"return/value", "bracketed numbers"}
    roles = [t["role"] for t in res.transcript]
    assert roles[:2] == ["hypothesis", "hypothesis@v1"]
    assert "decomposition@v1" in roles
    assert "refinement@v1" in roles
    assert any(t["role"] == "decomposition errors" for t in res.transcript)  # the invalid condition was reported
    assert usage["total"]["requests"] >= 5
    assert usage["total"]["prompt_tokens"] > 0


def test_llm_explain_retries_errors_cache_and_resume(minilm_store, tmp_path):
    from neuronscope.scoring.run import StoreSource

    source = StoreSource(minilm_store)
    out = tmp_path / "llm.jsonl"
    neurons = [(1, 0), (1, 1), (3, 2)]
    with ScriptedServer(default=fake_llm(fail_neuron="1/1")) as server:
        server.push(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "0.1"})
        server.push(status=500, json={"error": {"message": "boom"}})
        llm = {"base_url": server.url, "model": "scripted", "backoff_base_s": 0.01, "backoff_max_s": 0.05,
               "max_retries": 3, "concurrency": 2}
        rows = run_llm_explain(source, neurons, out, methods=("neuronscope", "single-pass"), rounds=2, chunk=8,
                               progress=False, llm=llm)
        n_first = len(server.requests)
    assert n_first > 10
    by = {(r["layer"], r["index"], r["method"]): r for r in rows}
    assert "error" in by[(1, 1, "neuronscope")]
    assert "LLMResponseError" in by[(1, 1, "neuronscope")]["error"]
    for key in [(1, 0, "neuronscope"), (3, 2, "neuronscope"), (1, 0, "single-pass")]:
        r = by[key]
        assert "error" not in r
        assert r["explanation"]["modes"]
        assert r["heldout"]["n_tokens"] > 0
        assert r["usage"]["requests"] >= 1
        assert r["usage"]["prompt_tokens"] > 0
    ns_row = by[(1, 0, "neuronscope")]
    assert any(t["role"] == "refinement" and t["probes"] >= 1 for t in ns_row["transcript"])  # probes were run
    on_disk = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(on_disk) == len(rows)

    # Rerun: finished neurons are skipped; only the failed ones are retried (now answered correctly).
    with ScriptedServer(default=fake_llm()) as server:
        rows2 = run_llm_explain(source, neurons, out, methods=("neuronscope", "single-pass"), rounds=2, chunk=8,
                                progress=False, llm={**llm, "base_url": server.url})
        prompts = [r.body["messages"][1]["content"] for r in server.requests]
    assert prompts
    assert all(re.search(r"[Nn]euron 1/1\b", p) for p in prompts)
    assert not any("error" in r for r in rows2)

    # Same requests again from scratch (output removed, cache kept): zero HTTP requests.
    out.unlink()
    with ScriptedServer(default=fake_llm()) as server:
        rows3 = run_llm_explain(source, neurons, out, methods=("neuronscope", "single-pass"), rounds=2, chunk=8,
                                progress=False, llm={**llm, "base_url": server.url})
        assert len(server.requests) == 0
    key = lambda r: (r["layer"], r["index"], r["method"])  # noqa: E731
    assert sorted(map(key, rows3)) == sorted(map(key, rows2))
    assert all(r["usage"]["cache_hits"] >= 1 for r in rows3)


def test_openai_backend_needs_a_model(minilm_store, tmp_path):
    from neuronscope.cli import main

    assert main(["explain", "--store", str(minilm_store.path), "--neurons", "1:0", "--backend", "openai",
                 "--out", str(tmp_path / "x.jsonl"), "--quiet"]) == 2


@pytest.mark.parametrize("bad", ["", "hello"])
def test_prompts_are_versioned_package_data(bad):
    from neuronscope.agents.prompts import load_prompt
    from neuronscope.errors import ConfigError

    for name in ("hypothesis", "decomposition", "explainer", "refinement", "single_pass", "simulator"):
        p = load_prompt(name)
        assert (p.version >= 1 and p.system and "{neuron}" in p.user) or name.startswith("simulator")
    with pytest.raises(ConfigError):
        load_prompt(bad or "missing")
