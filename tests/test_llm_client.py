"""Protocol tests of the LLM client against a scripted OpenAI-compatible server on a real local socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from llm_server import Reply, Request, ScriptedServer, chat_body, completion_body
from neuronscope.errors import ConfigError, LLMError
from neuronscope.llm import (
    LLMClient,
    LLMConfig,
    LLMConnectionError,
    LLMHTTPError,
    LLMLogprobsUnavailable,
    LLMRateLimited,
    LLMResponseError,
    LLMTimeout,
    ResponseCache,
    Usage,
    extract_json,
    normalize_base_url,
    retry_after_seconds,
    usage_tag,
)

T = TypeVar("T")
MESSAGES = [{"role": "user", "content": "Explain neuron 3/17."}]
KEY_ENV = "NEURONSCOPE_TEST_LLM_KEY"
SECRET = "sk-test-5f1c0ffee-do-not-leak"


def make_config(server: ScriptedServer, **overrides: Any) -> LLMConfig:
    """Small timeouts and backoff so that retries cost milliseconds."""
    settings: dict[str, Any] = dict(base_url=server.url, model="scripted", api_key_env=None, concurrency=4,
                                    timeout_s=2.0, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.02)
    settings.update(overrides)
    return LLMConfig(**settings)


def run(config: LLMConfig, work: Callable[[LLMClient], Awaitable[T]], **client_args: Any) -> T:
    async def main() -> T:
        async with LLMClient(config, **client_args) as llm:
            return await work(llm)

    return asyncio.run(main())


def chat(llm: LLMClient, **kwargs: Any) -> Awaitable[Any]:
    return llm.chat(MESSAGES, **kwargs)


# ------------------------------------------------------------------------------------------ retries, errors


def test_429_retry_after_is_honoured():
    with ScriptedServer() as server:
        server.push(status=429, headers={"Retry-After": "0.2"}, json={"error": {"message": "rate limited"}})
        server.push_chat("hello")
        result = run(make_config(server), chat)
        first, second = server.requests
    assert result.text == "hello"
    assert first.answered is not None
    assert second.received - first.answered >= 0.19  # the wait asked for, not the 10 ms backoff


def test_429_on_every_attempt_raises_rate_limited():
    with ScriptedServer() as server:
        for _ in range(3):
            server.push(status=429, json={"error": {"message": "quota exceeded"}})
        with pytest.raises(LLMRateLimited, match="quota exceeded") as info:
            run(make_config(server, max_retries=2), chat)
        assert len(server.requests) == 3
    assert info.value.status == 429
    assert info.value.attempts == 3


def test_500_then_success_and_usage_counts_the_retry():
    with ScriptedServer() as server:
        server.push(status=500, json={"error": {"message": "engine overloaded"}})
        server.push(status=503, raw="<html>bad gateway</html>", headers={"Content-Type": "text/html"})
        server.push_chat("ok", prompt_tokens=7, completion_tokens=3)
        usage = Usage()
        result = run(make_config(server, max_retries=3), chat, usage=usage)
        assert len(server.requests) == 3
    assert result.text == "ok"
    total = usage.total
    assert (total.calls, total.requests, total.retries, total.errors) == (1, 3, 2, 0)
    assert (total.prompt_tokens, total.completion_tokens) == (7, 3)


def test_timeouts_are_retried_then_raise_llm_timeout():
    with ScriptedServer() as server:
        for _ in range(3):
            server.push(delay=2.0, json=chat_body("too late"))
        with pytest.raises(LLMTimeout, match=r"timed out.*gave up after 3 attempts"):
            run(make_config(server, timeout_s=0.2, max_retries=2), chat)
        assert len(server.requests) == 3


def test_timeout_then_success():
    with ScriptedServer() as server:
        server.push(delay=2.0, json=chat_body("too late"))
        server.push_chat("in time")
        result = run(make_config(server, timeout_s=0.2), chat)
    assert result.text == "in time"


def test_dropped_connection_is_retried():
    with ScriptedServer() as server:
        server.push(close=True)
        server.push_chat("reconnected")
        result = run(make_config(server), chat)
        assert len(server.requests) == 2
    assert result.text == "reconnected"


def test_unreachable_server_raises_connection_error():
    with ScriptedServer() as server:
        url = server.url
    # The server is closed: the port refuses connections.
    config = LLMConfig(base_url=url, model="m", api_key_env=None, max_retries=1, backoff_base_s=0.01)
    with pytest.raises(LLMConnectionError, match="gave up after 2 attempts"):
        run(config, chat)


def test_400_is_not_retried_and_names_status_and_message():
    with ScriptedServer() as server:
        server.push(status=400, json={"error": {"message": "max_tokens is too large", "type": "invalid_request"}})
        server.push_chat("never served")
        usage = Usage()
        with pytest.raises(LLMHTTPError, match=r"HTTP 400: max_tokens is too large") as info:
            run(make_config(server), chat, usage=usage)
        assert len(server.requests) == 1
    assert info.value.status == 400
    assert usage.total.errors == 1


def test_401_hint_names_the_key_variable_not_the_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with ScriptedServer() as server:
        server.push(status=401, json={"error": "invalid api key"})  # Ollama's error shape
        with pytest.raises(LLMHTTPError) as info:
            run(make_config(server, api_key_env=KEY_ENV), chat)
    message = str(info.value)
    assert "invalid api key" in message
    assert f"${KEY_ENV}" in message
    assert SECRET not in message


def test_error_inside_200_is_treated_as_http_error():
    with ScriptedServer() as server:
        server.push(json={"error": {"message": "upstream provider overloaded", "code": 503}})
        server.push_chat("recovered")
        result = run(make_config(server), chat)
    assert result.text == "recovered"


# ------------------------------------------------------------------------------------------ structured output


def test_malformed_json_gets_one_corrective_retry():
    with ScriptedServer() as server:
        server.push_chat('Sure! Here it is: {"label": "months",, }')
        server.push_chat('```json\n{"label": "months", "strength": 4.5}\n```')
        result = run(make_config(server),
                     lambda llm: llm.chat_json(MESSAGES, schema_hint='{"label": str, "strength": float}'))
        retry = server.requests[1].body
    assert result.parsed == {"label": "months", "strength": 4.5}
    assert result.attempts == 2
    assert result.usage.prompt_tokens == 20  # both exchanges
    sent = retry["messages"]
    assert sent[:1] == MESSAGES
    assert sent[1] == {"role": "assistant", "content": 'Sure! Here it is: {"label": "months",, }'}
    assert sent[2]["role"] == "user"
    assert "only the JSON" in sent[2]["content"]
    assert '"strength": float' in sent[2]["content"]


def test_truncated_json_gets_a_corrective_retry():
    with ScriptedServer() as server:
        server.push_chat('{"modes": [{"label": "dates", "conditions": ["Jan', finish_reason="length")
        server.push_chat('{"modes": []}')
        result = run(make_config(server), lambda llm: llm.chat_json(MESSAGES))
        assert "cut off" in server.requests[1].body["messages"][-1]["content"]
    assert result.parsed == {"modes": []}


def test_validator_rejection_triggers_the_corrective_retry():
    def needs_label(value: Any) -> str:
        return value["label"]  # KeyError when missing

    with ScriptedServer() as server:
        server.push_chat('{"name": "x"}')
        server.push_chat('{"label": "y"}')
        result = run(make_config(server), lambda llm: llm.chat_json(MESSAGES, validator=needs_label))
    assert result.parsed == "y"


def test_twice_malformed_raises_with_raw_text_and_caches_nothing(tmp_path: Path):
    cache_path = tmp_path / "cache.sqlite"
    with ScriptedServer() as server:
        server.push_chat("I cannot answer in JSON.")
        server.push_chat('still not {"json"')
        with pytest.raises(LLMResponseError, match="after one corrective retry") as info:
            run(make_config(server, cache_path=cache_path), lambda llm: llm.chat_json(MESSAGES))
        assert len(server.requests) == 2
    assert info.value.raw_text == 'still not {"json"'
    with ResponseCache(cache_path) as cache:
        assert len(cache) == 0


def test_chat_with_json_schema_sends_the_format_and_parses():
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    with ScriptedServer() as server:
        server.push_chat('{"label": "digits"}')
        result = run(make_config(server), lambda llm: chat(llm, json_schema=schema))
        sent = server.requests[0].body["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert result.parsed == {"label": "digits"}


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', {"a": 1}),
    ('```json\n[1, 2]\n```', [1, 2]),
    ('Here you go:\n```\n{"a": "}"}\n```\nHope it helps', {"a": "}"}),
    ('The modes are {"m": [{"x": "a \\" ]"}]} as requested.', {"m": [{"x": 'a " ]'}]}),
    ('<think>maybe {"no": 1}?</think>{"yes": 2}', {"yes": 2}),
    ('note [a] then {"ok": true}', {"ok": True}),
])
def test_extract_json_tolerates_fences_and_prose(text: str, expected: Any):
    assert extract_json(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("no json here", "no JSON"),
    ('{"a": [1, 2', "cut off"),
    ('{"a": 1,, "b": {"c": 2}}', "invalid JSON"),  # the valid inner object is not taken for the answer
])
def test_extract_json_failures_say_why(text: str, reason: str):
    with pytest.raises(LLMResponseError, match=reason) as info:
        extract_json(text)
    assert info.value.raw_text == text


def test_extract_json_expect_object_skips_arrays():
    assert extract_json('[1] and {"a": 1}', expect="object") == {"a": 1}


# ------------------------------------------------------------------------------------------------ logprobs


def _lp(token: str, logprob: float, tops: dict[str, float]) -> dict[str, Any]:
    return {"token": token, "logprob": logprob,
            "top_logprobs": [{"token": t, "logprob": v} for t, v in tops.items()]}


def test_chat_logprobs_are_parsed():
    entries = [_lp("7", -0.1, {"7": -0.1, "8": -2.5}), _lp("\n", -0.01, {"\n": -0.01})]
    with ScriptedServer() as server:
        server.push_chat("7\n", logprobs=entries)
        result = run(make_config(server), lambda llm: chat(llm, top_logprobs=2))
        sent = server.requests[0].body
    assert sent["logprobs"] is True
    assert sent["top_logprobs"] == 2
    assert result.logprobs is not None
    assert [t.token for t in result.logprobs] == ["7", "\n"]
    assert [(a.token, a.logprob) for a in result.logprobs[0].top_logprobs] == [("7", -0.1), ("8", -2.5)]


def test_missing_chat_logprobs_raise_a_clear_error():
    with ScriptedServer() as server:
        server.push_chat("7")
        with pytest.raises(LLMLogprobsUnavailable, match="server returned no logprobs"):
            run(make_config(server), lambda llm: chat(llm, logprobs=True))


def test_completion_logprobs_with_echo():
    logprobs = {"tokens": ["The", " cat", " sat"], "token_logprobs": [None, -3.2, -1.0],
                "top_logprobs": [None, {" cat": -3.2, " dog": -1.5}, {" sat": -1.0}], "text_offset": [0, 3, 7]}
    with ScriptedServer() as server:
        server.push(json=completion_body(" sat", logprobs=logprobs))
        result = run(make_config(server),
                     lambda llm: llm.complete("The cat", logprobs=2, echo=True, max_tokens=1))
        request = server.requests[0]
    assert request.path == "/v1/completions"
    assert request.body["echo"] is True
    assert request.body["logprobs"] == 2
    assert request.body["max_tokens"] == 1
    assert result.logprobs is not None
    assert result.logprobs[0].logprob is None  # the first echoed token has no context
    assert [a.token for a in result.logprobs[1].top_logprobs] == [" dog", " cat"]  # most likely first
    assert result.logprobs[2].text_offset == 7


def test_missing_completion_logprobs_raise_a_clear_error():
    with ScriptedServer() as server:
        server.push(json=completion_body("x"))
        with pytest.raises(LLMLogprobsUnavailable, match="server returned no logprobs"):
            run(make_config(server), lambda llm: llm.complete("a", logprobs=1))


# --------------------------------------------------------------------------------------- cache and secrets


def _answer_by_prompt(request: Request) -> Reply:
    return Reply(json=chat_body(f"answer to {request.body['messages'][-1]['content']}"))


def test_cache_hit_on_rerun_makes_zero_requests(tmp_path: Path):
    config_args = dict(cache_path=tmp_path / "llm.sqlite")

    async def work(llm: LLMClient) -> list[Any]:
        prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(5)]
        return await asyncio.gather(*(llm.chat(p) for p in prompts))

    with ScriptedServer(default=_answer_by_prompt) as server:
        first = run(make_config(server, **config_args), work)
        assert len(server.requests) == 5
        usage = Usage()
        second = run(make_config(server, **config_args), work, usage=usage)
        assert len(server.requests) == 5  # nothing new reached the server
    assert [r.text for r in second] == [r.text for r in first]
    assert all(r.cached for r in second)
    assert not any(r.cached for r in first)
    assert (usage.total.cache_hits, usage.total.requests, usage.total.prompt_tokens) == (5, 0, 0)


def test_corrected_json_replays_from_cache_with_zero_requests(tmp_path: Path):
    config_args = dict(cache_path=tmp_path / "llm.sqlite")
    with ScriptedServer() as server:
        server.push_chat("no JSON, sorry")
        server.push_chat('{"label": "months"}')
        first = run(make_config(server, **config_args), lambda llm: llm.chat_json(MESSAGES))
        second = run(make_config(server, **config_args), lambda llm: llm.chat_json(MESSAGES))
        assert len(server.requests) == 2
    assert first.parsed == second.parsed == {"label": "months"}
    assert second.cached
    assert second.attempts == 2


def test_errors_are_not_cached(tmp_path: Path):
    config_args = dict(cache_path=tmp_path / "llm.sqlite", max_retries=0)
    with ScriptedServer() as server:
        server.push(status=500, json={"error": {"message": "boom"}})
        with pytest.raises(LLMHTTPError):
            run(make_config(server, **config_args), chat)
        server.push_chat("7")  # no logprobs: rejected, so not cached either
        with pytest.raises(LLMLogprobsUnavailable):
            run(make_config(server, **config_args), lambda llm: chat(llm, logprobs=True))
        server.push_chat("fine")
        assert run(make_config(server, **config_args), chat).text == "fine"
        assert len(server.requests) == 3


def test_api_key_sent_as_bearer_but_never_stored_or_shown(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    cache_path = tmp_path / "llm.sqlite"
    config_args = dict(api_key_env=KEY_ENV, cache_path=cache_path)
    with ScriptedServer() as server:
        server.push(status=503, json={"error": {"message": "warming up"}})  # so that a retry is logged
        server.push_chat("fine")
        config = make_config(server, **config_args)
        shown = []

        async def work(llm: LLMClient) -> Any:
            shown.append(repr(llm))
            return await chat(llm)

        result = run(config, work)
        assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("llm.sqlite"))
    assert stored
    assert SECRET.encode() not in stored
    assert SECRET not in repr(config) + shown[0] + repr(result) + str(result.raw)
    assert "warming up" in caplog.text
    assert SECRET not in caplog.text


def test_no_authorization_header_without_a_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with ScriptedServer() as server:
        server.push_chat("ok")
        run(make_config(server, api_key_env=KEY_ENV), chat)
        assert "authorization" not in server.requests[0].headers


# -------------------------------------------------------------------------------- concurrency and accounting


def test_concurrency_limit_is_respected():
    def slow(request: Request) -> Reply:
        return Reply(json=chat_body("ok"), delay=0.1)

    async def work(llm: LLMClient) -> list[Any]:
        return await asyncio.gather(*(chat(llm) for _ in range(10)))

    with ScriptedServer(default=slow) as server:
        results = run(make_config(server, concurrency=3), work)
        assert len(server.requests) == 10
    assert len(results) == 10
    assert server.max_in_flight == 3


def test_usage_and_cost_per_tag_and_per_run():
    def reply(request: Request) -> Reply:
        return Reply(json=chat_body("ok", prompt_tokens=1000, completion_tokens=200))

    async def work(llm: LLMClient) -> None:
        async def neuron(tag: str, calls: int) -> None:
            with usage_tag(tag):
                for _ in range(calls):
                    await chat(llm)

        await asyncio.gather(neuron("3/17", 2), neuron("3/18", 1))
        await chat(llm, tag="run")

    with ScriptedServer(default=reply) as server:
        config = make_config(server, price_prompt_per_1k=0.5, price_completion_per_1k=2.0)
        client_usage = Usage(config.price_prompt_per_1k, config.price_completion_per_1k)
        run(config, work, usage=client_usage)
    summary = client_usage.summary()
    assert summary["total"]["calls"] == 4
    assert summary["total"]["requests"] == 4
    assert summary["total"]["total_tokens"] == 4 * 1200
    assert summary["total"]["cost_usd"] == pytest.approx(4 * (0.5 + 0.4))
    assert summary["by_tag"]["3/17"]["prompt_tokens"] == 2000
    assert summary["by_tag"]["3/17"]["cost_usd"] == pytest.approx(1.8)
    assert summary["by_tag"]["3/18"]["calls"] == 1
    assert client_usage.summary_for("run")["completion_tokens"] == 200
    assert Usage().summary_for("x")["cost_usd"] is None  # unknown, not free


# ----------------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("url", "root"), [
    ("http://localhost:11434", "http://localhost:11434/v1"),
    ("http://localhost:8000/v1/", "http://localhost:8000/v1"),
    ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1"),
])
def test_base_url_normalisation(url: str, root: str):
    assert normalize_base_url(url) == root


def test_base_url_with_v1_reaches_the_same_routes():
    with ScriptedServer() as server:
        server.push_chat("ok")
        run(make_config(server, base_url=server.url + "/v1/"), chat)
        assert server.requests[0].path == "/v1/chat/completions"


@pytest.mark.parametrize("overrides", [
    {"model": ""}, {"concurrency": 0}, {"timeout_s": 0}, {"max_retries": -1}, {"base_url": "localhost:8000"},
])
def test_bad_config_names_the_argument(overrides: dict[str, Any]):
    settings: dict[str, Any] = {"model": "m", **overrides}
    with pytest.raises(ConfigError, match=next(iter(overrides))):
        LLMConfig(**settings)


def test_retry_after_forms():
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert 25 < (retry_after_seconds({"retry-after": later}) or 0) <= 30
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_client_must_be_opened():
    llm = LLMClient(LLMConfig(model="m"))
    with pytest.raises(LLMError, match="not open"):
        asyncio.run(llm.chat(MESSAGES))
