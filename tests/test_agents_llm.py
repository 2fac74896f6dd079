"""The NeuronScope loop with an LLM, against a scripted OpenAI-compatible server on a real socket."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from llm_server import Reply, ScriptedServer, chat_body
from neuronscope.agents import OfflineConfig, explain, single_pass
from neuronscope.agents.llm_agents import LLMNeuronScope
from neuronscope.llm import LLMClient, LLMConfig
from neuronscope.scoring import ExecSimulator, score_explanations
from test_agents_offline import planted  # noqa: F401  (fixture)

RETURN = {"kind": "token", "tokens": ["return", "value"]}
DIGIT = {"kind": "all", "conditions": [{"kind": "token_regex", "pattern": "^\\d+$"},
                                       {"kind": "prev_token", "tokens": ["(", "["], "offset": 1}]}


def fake_llm(fail_neuron: str | None = None, garbage_neuron: str | None = None):
    """Answers each role's prompt like a competent model would; refuses every request about ``fail_neuron``
    (HTTP 400) and answers prose with a broken brace for ``garbage_neuron``."""

    def respond(req) -> Reply:
        if "messages" not in req.body:
            return Reply(status=404, json={"error": {"message": "no /completions here"}})
        msgs = req.body["messages"]
        system, user = msgs[0]["content"], msgs[1]["content"]
        if fail_neuron and re.search(rf"[Nn]euron {re.escape(fail_neuron)}\b", user):
            return Reply(status=400, json={"error": {"message": "this request is refused"}})
        if garbage_neuron and re.search(rf"[Nn]euron {re.escape(garbage_neuron)}\b", user):
            return Reply(json=chat_body("I am not sure what this neuron does {"))
        if "What do the marked tokens have in common" in user:
            out = {"hypotheses": ["the words return and value", "numbers inside brackets"]}
        elif "testable conditions" in system:
            out = {"components": [{"hypothesis": "return/value", "condition": RETURN},
                                  {"hypothesis": "numbers", "condition": {"kind": "token_regex", "pattern": "^\\d+$"}},
                                  {"hypothesis": "bad", "condition": {"kind": "nonsense"}}]}
        elif "one group of tokens" in system:
            out = {"label": "return/value" if "return" in user else "bracketed numbers",
                   "description": "the words return or value" if "return" in user else
                   "a number right after an opening bracket"}
        elif "refine explanations" in system:
            out = {"modes": [{"label": "return/value", "description": "the words return or value",
                              "conditions": [RETURN]},
                             {"label": "bracketed numbers", "description": "a number right after an opening bracket",
                              "conditions": [DIGIT]}],
                   "probes": ["It will return the value (3) and [4].", "Nothing to see here."]}
        elif "fires most" in user:
            out = {"description": "the word return in code", "conditions": [{"kind": "token", "tokens": ["return"]}]}
        else:
            return Reply(status=400, json={"error": {"message": "unexpected prompt"}})
        return Reply(json=chat_body(json.dumps(out)))

    return respond


def _config(server: ScriptedServer, **kw) -> LLMConfig:
    return LLMConfig(base_url=server.url, model="scripted", backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5,
                     **kw)


def test_llm_loop_protocol_with_a_scripted_server(planted):  # noqa: F811
    """A protocol test: the server is scripted to answer with the true conditions, so this checks that every
    role is asked, parsed, validated (the invalid condition is reported) and wired into the modes — not that
    an LLM can find them (that is ``neuronscope eval --backend openai`` on a real model)."""
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
    assert roles[:2] == ["hypothesis", "hypothesis@v2"]
    assert "decomposition@v4" in roles
    assert "refinement@v4" in roles
    assert any(t["role"] == "decomposition errors" for t in res.transcript)  # the invalid condition was reported
    assert usage["total"]["requests"] >= 5
    assert usage["total"]["prompt_tokens"] > 0


def test_the_survey_refits_levels_but_keeps_the_llm_names(planted):  # noqa: F811
    """The survey joins at the first refinement round and refits every mode's strengths; the names the explainer
    role wrote stay (re-rendering them from the conditions would throw the LLM's labels away)."""
    import dataclasses

    evidence, ev = planted
    base = fake_llm()

    def respond(req) -> Reply:
        msgs = req.body.get("messages") or [{"content": ""}, {"content": ""}]
        if "one group of tokens" in msgs[0]["content"]:
            return Reply(json=chat_body(json.dumps({"label": "scripted meaning",
                                                    "description": "a description the scripted model wrote"})))
        if "refine explanations" in msgs[0]["content"]:
            return Reply(json=chat_body(json.dumps({"modes": [], "probes": []})))
        return base(req)

    survey = [dataclasses.replace(w, kind="survey") for w in evidence.train[:6]]

    async def go():
        async with LLMClient(_config(server)) as client:
            return await LLMNeuronScope(evidence, client, evaluator=ev, cfg=OfflineConfig(rounds=1),
                                        survey=survey).arun()

    with ScriptedServer(default=respond) as server:
        res = asyncio.run(go())
    roles = [t["role"] for t in res.transcript]
    assert "survey" in roles
    assert roles.index("survey") < roles.index("refinement")
    assert res.explanation.modes
    assert {m.label for m in res.explanation.modes} == {"scripted meaning"}
    assert {m.description for m in res.explanation.modes} == {"a description the scripted model wrote"}


def test_llm_explain_retries_errors_cache_and_resume(minilm_store, tmp_path):
    from neuronscope.scoring.run import StoreSource

    source = StoreSource(minilm_store)
    out = tmp_path / "llm.jsonl"
    neurons = [(1, 0), (1, 1), (3, 2)]
    with ScriptedServer(default=fake_llm(fail_neuron="1/1", garbage_neuron="3/2")) as server:
        server.push(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "0.1"})
        server.push(status=500, json={"error": {"message": "boom"}})
        llm = {"base_url": server.url, "model": "scripted", "backoff_base_s": 0.01, "backoff_max_s": 0.05,
               "max_retries": 3, "concurrency": 2}
        rows = explain(source, neurons, out, methods=("neuronscope", "single-pass"), backend="openai",
                       rounds=2, chunk=8, progress=False, llm=llm)
        n_first = len(server.requests)
    assert n_first > 10
    by = {(r["layer"], r["index"], r["method"]): r for r in rows}
    assert "error" in by[(1, 1, "neuronscope")]
    assert "LLMHTTPError" in by[(1, 1, "neuronscope")]["error"]
    # Unusable replies are no crash: every role's failure and fallback is in the transcript, offline candidates
    # stand in for the conditions, and the row is an explanation.
    garbled = by[(3, 2, "neuronscope")]
    assert "error" not in garbled
    failed = [t for t in garbled["transcript"] if "error" in t]
    assert {t["role"] for t in failed} >= {"hypothesis@v2", "decomposition@v4", "refinement@v4"}
    assert all("not sure" in t["reply"] for t in failed)
    assert {t["step"] for t in garbled["transcript"] if t["role"] == "fallback"} >= {"hypothesis", "decomposition"}
    assert garbled["explanation"]["modes"]
    assert "error" not in by[(3, 2, "single-pass")]
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
        rows2 = explain(source, neurons, out, methods=("neuronscope", "single-pass"), backend="openai",
                        rounds=2, chunk=8, progress=False, llm={**llm, "base_url": server.url})
        prompts = [r.body["messages"][1]["content"] for r in server.requests]
    assert prompts
    assert all(re.search(r"[Nn]euron 1/1\b", p) for p in prompts)
    assert not any("error" in r for r in rows2)

    # Same requests again from scratch (output removed, cache kept): HTTP requests only where a reply was unusable
    # (never cached), i.e. for neuron 3/2; everything else comes from the cache.
    out.unlink()
    with ScriptedServer(default=fake_llm()) as server:
        rows3 = explain(source, neurons, out, methods=("neuronscope", "single-pass"), backend="openai",
                        rounds=2, chunk=8, progress=False, llm={**llm, "base_url": server.url})
        prompts3 = [r.body["messages"][1]["content"] for r in server.requests]
    assert prompts3
    assert all(re.search(r"[Nn]euron 3/2\b", p) for p in prompts3)
    key = lambda r: (r["layer"], r["index"], r["method"])  # noqa: E731
    assert sorted(map(key, rows3)) == sorted(map(key, rows2))
    assert all(r["usage"]["cache_hits"] >= 1 for r in rows3 if r["index"] != 2)


def test_openai_backend_needs_a_model(minilm_store, tmp_path):
    from neuronscope.cli import main

    assert main(["explain", "--store", str(minilm_store.path), "--neurons", "1:0", "--backend", "openai",
                 "--out", str(tmp_path / "x.jsonl"), "--quiet"]) == 2


@pytest.mark.parametrize("bad", ["", "hello"])
def test_prompts_are_versioned_package_data(bad):
    from neuronscope.errors import ConfigError
    from neuronscope.prompts import load_prompt

    for name in ("hypothesis", "decomposition", "explainer", "refinement", "single_pass", "simulator",
                 "simulator_json"):
        p = load_prompt(name)
        assert p.version >= 1
        assert p.system
        assert p.user.strip()
        if not name.startswith("simulator"):  # the simulator sees an explanation, not a neuron id
            assert "{neuron}" in p.user
    with pytest.raises(ConfigError):
        load_prompt(bad or "missing")


def _lp(token: str, alts: dict[str, float] | None = None) -> dict:
    import math

    alts = alts or {token: 0.0}
    return {"token": token, "logprob": max(alts.values()) if token in alts else -0.1,
            "top_logprobs": [{"token": t, "logprob": math.log(p) if p > 0 else -50.0} for t, p in alts.items()]}


def test_score_cli_with_llm_simulator(minilm_store, tmp_path):
    from neuronscope.cli import main
    from neuronscope.explanations import Explanation, write_explanations

    exps = tmp_path / "free.jsonl"
    write_explanations(exps, [Explanation(1, 0, [], text="punctuation", method="openai")])

    def answer(req) -> Reply:
        if "messages" not in req.body:  # a chat-only server: no prompt scoring on /v1/completions
            return Reply(status=404, json={"error": {"message": "not found"}})
        content = req.body["messages"][1]["content"]
        lines = [ln for ln in content.split("\n") if re.match(r"^\d+\t", ln)]
        reply = "\n".join(f"{ln.split(chr(9))[0]}\t{10 if any(c in ln for c in '.,:;()') else 0}" for ln in lines)
        lps = []
        for ln in reply.split("\n"):
            i, v = ln.split("\t")
            lps += [_lp(i), _lp("\t"), _lp(v, {v: 1.0}), _lp("\n")]
        return Reply(json=chat_body(reply, logprobs=lps))

    out = tmp_path / "s.jsonl"
    with ScriptedServer(default=answer) as server:
        assert main(["score", "--store", str(minilm_store.path), "--explanations", str(exps), "--simulator", "llm",
                     "--base-url", server.url, "--model", "scripted", "--out", str(out), "--quiet"]) == 0
        assert len(server.requests) > 5
    row = json.loads(out.read_text())
    assert row["simulator"] == "llm"
    assert -1 <= row["score"] <= 1
    assert row["n_tokens"] > 0
    assert main(["score", "--store", str(minilm_store.path), "--explanations", str(exps), "--simulator", "llm",
                 "--out", str(tmp_path / "t.jsonl"), "--quiet"]) == 2  # no --model


@pytest.mark.parametrize("message", [
    "request (4684 tokens) exceeds the available context size (4096 tokens), try increasing it",  # llama.cpp
    "This model's maximum context length is 4096 tokens. However, you requested 4684 tokens.",  # vLLM, OpenAI
])
def test_a_prompt_longer_than_the_context_is_a_role_failure_not_the_neurons(planted, message):  # noqa: F811
    """The refinement prompt does not fit the server's context (HTTP 400): the loop records the failure in the
    transcript, keeps the modes it has and finishes; another HTTP 400 still fails the neuron."""
    evidence, ev = planted
    base = fake_llm()

    def respond(req) -> Reply:
        if "messages" in req.body and "refine explanations" in req.body["messages"][0]["content"]:
            return Reply(status=400, json={"error": {"message": message}})
        return base(req)

    async def go():
        async with LLMClient(_config(server)) as client:
            return await LLMNeuronScope(evidence, client, evaluator=ev, cfg=OfflineConfig(rounds=2)).arun()

    with ScriptedServer(default=respond) as server:
        res = asyncio.run(go())
    failed = [t for t in res.transcript if t["role"].startswith("refinement@") and t.get("finish_reason") == "context"]
    assert failed
    assert "context" in failed[0]["error"]
    assert any(m.conditions for m in res.explanation.modes)

    def refuse(req) -> Reply:
        if "messages" in req.body and "refine explanations" in req.body["messages"][0]["content"]:
            return Reply(status=400, json={"error": {"message": "this request is refused"}})
        return base(req)

    with ScriptedServer(default=refuse) as server, pytest.raises(Exception, match="refused"):
        asyncio.run(go())
