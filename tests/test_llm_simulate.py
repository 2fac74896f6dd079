"""The LLM simulator as OpenAI's neuron-explainer defines it: exact answer tokens, renormalised expected values,
0 for a missing distribution; all-at-once prompt scoring, the generated-token method, "10" as two tokens."""

from __future__ import annotations

import asyncio
import json
import math
import re

import numpy as np
import pytest

from llm_server import Reply, ScriptedServer, chat_body, completion_body
from neuronscope.explanations import Explanation
from neuronscope.llm import LLMClient, LLMConfig
from neuronscope.llm.parse import TokenLogprob
from neuronscope.scoring import WindowBatch
from neuronscope.scoring.llm_simulate import (
    LLMSimulator,
    all_at_once_prompt,
    answer_distribution,
    expected_value,
    generated_expected_values,
    split_ten,
    ten_share,
)
from neuronscope.scoring.score import score_batch
from test_agents_offline import planted  # noqa: F401  (fixture)


def tl(token: str, alts: dict[str, float] | None = None) -> TokenLogprob:
    """A token with alternatives given as probabilities."""
    alts = alts if alts is not None else {token: 1.0}
    return TokenLogprob(token, math.log(alts.get(token, 1e-9)),
                        tuple(TokenLogprob(t, math.log(p)) for t, p in alts.items()))


def test_only_the_exact_tokens_0_to_10_count():
    alts = [tl(t) for t in (" 5", "05", "\u0665", "\u00b2", "5.", "five", "11", "-1")]  # none is an answer
    assert answer_distribution(alts) == {}
    assert expected_value(answer_distribution(alts)) is None  # "²" and Arabic-Indic digits raise nothing
    mixed = [TokenLogprob("3", math.log(0.2)), TokenLogprob(" 9", math.log(0.5)), TokenLogprob("10", math.log(0.3))]
    dist = answer_distribution(mixed)
    assert dist == pytest.approx({3: 0.2, 10: 0.3})
    assert expected_value(dist) == pytest.approx((3 * 0.2 + 10 * 0.3) / 0.5)  # renormalised over the answers


def test_ten_as_two_tokens_is_split_by_the_continuation():
    assert ten_share(tl("0", {"0": 0.6, "\n": 0.2, "5": 0.2}).top_logprobs) == pytest.approx(0.75)  # "15": no answer
    assert ten_share(tl("x", {"x": 1.0}).top_logprobs) is None
    assert split_ten({0: 0.5, 1: 0.5}, 0.75) == pytest.approx({0: 0.5, 1: 0.125, 10: 0.375})
    assert split_ten({0: 0.5, 1: 0.5}, None) == {0: 0.5, 1: 0.5}


def test_generated_method_reads_each_answer_position():
    from collections import Counter

    toks = [tl("1"), tl("\t"), tl("0", {"0": 0.8, "2": 0.2}), tl("\n"),
            tl("2"), tl("\t"), tl("1", {"1": 0.5, "0": 0.5}), tl("0", {"0": 0.75, "\n": 0.25}), tl("\n"),
            tl("3"), tl("\t"), tl(" 5", {" 5": 0.9, "\u00b2": 0.1}), tl("\n"),
            tl("4"), tl("\t"), tl("7", {"7": 0.5, "1": 0.5}), tl("\n")]
    stats = Counter()
    got = generated_expected_values(toks, 5, stats)
    assert got.tolist() == pytest.approx([0.4, (0.125 * 1 + 0.375 * 10) / 1.0, 0.0, 4.0, 0.0])
    assert stats["missing_distribution"] == 1  # line 3: no exact answer token
    assert stats["missing_line"] == 1  # token 5 never answered
    assert stats["missing"] == 2
    assert stats["ten_split"] == 1
    assert stats["ten_unsplit"] == 1


def _tokenize(text: str, ten_tokens: int) -> list[str]:
    """A toy tokenizer: words with their leading space, digits one by one (or "10" whole), every other char."""
    pat = r" ?[A-Za-z_]+|10|\d|." if ten_tokens == 1 else r" ?[A-Za-z_]+|\d|."
    return re.findall(pat, text, flags=re.DOTALL)


def echo_server(truth: list[float], ten_tokens: int, seen: list[str]):
    """Scores prompts the way OpenAI's legacy API (and vLLM's prompt_logprobs) do: ``echo`` returns every prompt
    token with its top alternatives. At the k-th ``unknown`` the answer distribution puts its mass on ``truth[k]``;
    after a ``1`` placeholder (the second pass) "0" follows with probability 0.5."""

    def respond(req) -> Reply:
        if "prompt" not in req.body:
            return Reply(status=400, json={"error": {"message": "chat is not used here"}})
        prompt = req.body["prompt"]
        seen.append(prompt)
        assert req.body["echo"] is True
        assert req.body["logprobs"] == 15
        toks = _tokenize(prompt, ten_tokens)
        start = prompt.rfind("<start>")
        tops, offsets, pos, k = [], [], 0, 0
        for i, t in enumerate(toks):
            offsets.append(pos)
            alts = {t: -0.1}
            if pos > start and toks[i - 1] == "\t" and t == "unknown":
                v = truth[k]
                k += 1
                if ten_tokens == 2 and v == 10:
                    alts = {"unknown": -0.01, "1": math.log(0.9), "0": math.log(0.1)}
                else:
                    alts = {"unknown": -0.01, str(int(v)): math.log(0.9), " 7": math.log(0.1)}
            elif pos > start and toks[i - 1] == "1" and toks[i - 2] == "\t":
                alts = {t: -0.1, "0": math.log(0.5), "\n": math.log(0.5)}
            tops.append(alts)
            pos += len(t)
        lp = {"tokens": toks, "token_logprobs": [None] + [-0.1] * (len(toks) - 1), "top_logprobs": tops,
              "text_offset": offsets}
        return Reply(json=completion_body(prompt + "\n", logprobs=lp))

    return respond


def _config(server: ScriptedServer) -> LLMConfig:
    return LLMConfig(base_url=server.url, model="scripted", backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5,
                     max_retries=0)


@pytest.mark.parametrize("ten_tokens", [1, 2])
def test_all_at_once_scores_the_prompt_and_handles_ten(ten_tokens):
    pieces = [" the", " cat", " sat", "\n", " 10"]
    truth = [0.0, 10.0, 3.0, 0.0, 10.0]
    seen: list[str] = []

    async def go():
        async with LLMClient(_config(server)) as client:
            sim = LLMSimulator(client, None)
            out = await sim._window("cats", pieces)
            return out, sim

    with ScriptedServer(default=echo_server(truth, ten_tokens, seen)) as server:
        out, sim = asyncio.run(go())
    assert sim.method == "prompt"
    text, offsets, ten_at = all_at_once_prompt("cats", pieces)
    assert all(text[o : o + 7] == "unknown" for o in offsets)
    assert text[ten_at : ten_at + 2] == "10"
    assert "\\n\tunknown" in text  # a newline token is shown, never breaks the line format
    if ten_tokens == 1:
        assert len(seen) == 1  # one scoring pass
        want = [0.0, 10.0, (3 * 0.9) / 0.9, 0.0, 10.0]  # " 7" is not an answer: renormalised away
    else:
        assert len(seen) == 2
        assert "\t1\n" in seen[1]
        ten = (1 * 0.45 + 10 * 0.45) / 1.0  # P("1") = 0.9 split by q = 0.5; P("0") = 0.1
        want = [0.0, ten, 3.0, 0.0, ten]
    assert out.tolist() == pytest.approx(want)
    assert sim.stats["missing"] == 0


def test_auto_falls_back_to_generated_then_json(planted):  # noqa: F811
    """A chat-only server with logprobs gets the generated method; one without logprobs the JSON method; the
    predictions score as the known activations do."""
    evidence, _ = planted
    windows = evidence.heldout[:6]
    batch = WindowBatch.build(windows)
    truth = [(w.acts > 1.0).astype(int) * 10 for w in windows]
    pieces = [[evidence.vocab.pieces[i] for i in w.ids.tolist()] for w in windows]

    def which(content: str) -> np.ndarray:
        for k, ps in enumerate(pieces):
            listing = "\n".join(f"{i + 1}\t{s.replace(chr(10), chr(92) + 'n')}" for i, s in enumerate(ps))
            if listing in content or repr(ps) in content:
                return truth[k]
        raise AssertionError("unknown window")

    def by_logprobs(req) -> Reply:
        if "messages" not in req.body:
            return Reply(status=404, json={"error": {"message": "no completions"}})
        w = which(req.body["messages"][1]["content"])
        lines, lps = [], []
        for i, v in enumerate(w):
            lines.append(f"{i + 1}\t{v}")
            ans = [{"token": "1", "logprob": math.log(0.9), "top_logprobs": [
                {"token": "1", "logprob": math.log(0.9)}, {"token": "0", "logprob": math.log(0.1)}]},
                {"token": "0", "logprob": 0.0, "top_logprobs": [{"token": "0", "logprob": 0.0}]}] if v == 10 else [
                {"token": "0", "logprob": math.log(0.9), "top_logprobs": [
                    {"token": "0", "logprob": math.log(0.9)}, {"token": "5", "logprob": math.log(0.1)}]}]
            lps += [{"token": str(i + 1), "logprob": 0.0, "top_logprobs": []},
                    {"token": "\t", "logprob": 0.0, "top_logprobs": []}, *ans,
                    {"token": "\n", "logprob": 0.0, "top_logprobs": []}]
        return Reply(json=chat_body("\n".join(lines), logprobs=lps))

    def no_logprobs(req) -> Reply:
        if "messages" not in req.body:
            return Reply(status=404, json={"error": {"message": "no completions"}})
        content = req.body["messages"][1]["content"]
        if "Tokens:" not in content:
            return Reply(json=chat_body("1\t0"))  # no logprobs in the answer
        assert req.body["response_format"]["type"] == "json_schema"
        return Reply(json=chat_body(json.dumps({"activations": which(content).tolist()})))

    e = Explanation(0, 0, [], text="the words return or value, and numbers in brackets")
    for responder, method in ((by_logprobs, "generated"), (no_logprobs, "json")):
        async def go():
            async with LLMClient(_config(server)) as client:
                sim = LLMSimulator(client, evidence.vocab)
                return await sim.asimulate([e], batch), sim

        with ScriptedServer(default=responder) as server:
            sims, sim = asyncio.run(go())
        assert sim.method == method
        assert sim.stats[f"method:{method}"] == len(windows)
        res = score_batch([e], sims, batch, "llm")[0]
        assert res.score > 0.9, method
