"""Async client for any OpenAI-compatible server: OpenAI, vLLM, SGLang, Ollama, llama.cpp server, OpenRouter.

One ``httpx.AsyncClient`` per run (``async with LLMClient(config) as llm:``), a semaphore bounding the
requests in flight, timeouts, and retries only for failures that can pass (429, 408, 5xx, timeouts, dropped
connections) with exponential backoff and full jitter, honouring ``Retry-After``. Other answers fail at once
with a typed error naming the status and the server's own message. Accepted responses go to an optional
sqlite cache; tokens, requests and cost are accounted per tag and per run.

Every attempt must bring its whole answer within ``deadline_s`` and at most ``max_response_bytes`` of body
(``transport.py``: a stream with a byte count), so a server that drips bytes, stalls, or sends an
endless body cannot hold a request or fill memory: the first is a timeout (retried), the second an unusable
response (not retried).

The API key is read from the environment variable the config names, put in the Authorization header and
nowhere else: not in the config, a repr, a log line, the cache, or a result. A server that echoes it back
does not get it written anywhere either: every response and server message is redacted (``redact.py``) as it
arrives, before the cache, the results and the errors see it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from ..errors import ConfigError, LLMError
from .cache import ResponseCache
from .config import LLMConfig, normalize_base_url
from .errors import (
    LLMConnectionError,
    LLMHTTPError,
    LLMRateLimited,
    LLMResponseError,
    LLMTimeout,
    retry_after_seconds,
    retryable_status,
    server_message,
)
from .parse import ChatResult, CompletionResult, chat_result, completion_result, extract_json, token_usage
from .redact import redact, redact_json
from .transport import deadline, post_capped
from .usage import Usage, current_tag

__all__ = ["LLMClient", "LLMConfig", "normalize_base_url", "retry_after_seconds"]

logger = logging.getLogger("neuronscope.llm")
_SCHEMA_REFUSAL = re.compile(r"response_format|json_schema|schema|grammar|structured", re.IGNORECASE)
"""What a server's 400/422 says when it is the JSON schema it refuses (not the request as a whole)."""


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Exchange:
    """One request body and the response accepted for it; ``key`` is set while the response awaits caching."""

    endpoint: str
    data: Any
    request_id: str | None
    cached: bool
    key: str | None = None


class LLMClient:
    """Async client for one run; use as ``async with LLMClient(config) as llm: ...``.

    ``usage`` and ``cache`` may be shared with other clients; by default they are created from the config.
    ``transport`` replaces httpx's network transport (e.g. ``httpx.MockTransport`` in tests).
    """

    def __init__(self, config: LLMConfig, *, usage: Usage | None = None, cache: ResponseCache | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.usage = usage if usage is not None else Usage(config.price_prompt_per_1k, config.price_completion_per_1k)
        self._root = config.api_root
        self._cache = cache
        self._owns_cache = cache is None and config.cache_path is not None
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._secrets: tuple[str, ...] = ()
        """The API key sent, redacted from everything the server says."""
        self._schema_ok = True
        """False once the server refused a JSON-schema ``response_format`` (some only take ``json_object``)."""

    def __repr__(self) -> str:
        return (f"LLMClient(base_url={self._root!r}, model={self.config.model!r}, "
                f"concurrency={self.config.concurrency}, cache={self._cache!r})")

    async def __aenter__(self) -> LLMClient:
        cfg = self.config
        headers = {}
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
            self._secrets = (key,)
        self._http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(cfg.timeout_s), transport=self._transport,
            # An HTTP(S)_PROXY from the environment cannot reach this machine's loopback (local vLLM, Ollama).
            trust_env=not _is_loopback(self._root),
            limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency))
        self._sem = asyncio.Semaphore(cfg.concurrency)
        if self._owns_cache and cfg.cache_path is not None:
            self._cache = ResponseCache(cfg.cache_path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._owns_cache and self._cache is not None:
            self._cache.close()
            self._cache = None

    # ----------------------------------------------------------------------------------------- public calls

    async def chat(self, messages: Sequence[Mapping[str, Any]], *, json_schema: Mapping[str, Any] | None = None,
                   response_format: Mapping[str, Any] | None = None, logprobs: bool = False,
                   top_logprobs: int | None = None, tag: str | None = None, use_cache: bool = True,
                   **params: Any) -> ChatResult:
        """One chat completion. ``params`` go into the request body (``None`` removes a default field).

        With ``json_schema`` (sent as a ``json_schema`` response format) or a JSON ``response_format`` the
        reply is parsed into ``parsed`` and an unparsable reply raises LLMResponseError at once; use
        :meth:`chat_json` for one corrective retry. ``top_logprobs`` implies ``logprobs``; a server that
        returns none raises :class:`LLMLogprobsUnavailable`.
        """
        tag = tag if tag is not None else current_tag()
        want_logprobs = logprobs or top_logprobs is not None
        body = self._chat_body(messages, json_schema, response_format, want_logprobs, top_logprobs, params)
        fmt = body.get("response_format")
        want_json = isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema")
        with self._accounting(tag):
            ex = await self._exchange("chat/completions", body, tag, use_cache)
            result = chat_result(ex.data, want_logprobs=want_logprobs, where=self._url(ex.endpoint),
                                 cached=ex.cached, request_id=ex.request_id)
            if want_json:
                result = replace(result, parsed=extract_json(result.text))
            self._store([ex])
            return result

    async def chat_json(self, messages: Sequence[Mapping[str, Any]], *,
                        validator: Callable[[Any], Any] | None = None, schema_hint: str | None = None,
                        json_schema: Mapping[str, Any] | None = None,
                        expect: Literal["object", "array"] | None = None, tag: str | None = None,
                        use_cache: bool = True, **params: Any) -> ChatResult:
        """A chat completion whose reply must hold JSON; the value (after ``validator``) is in ``parsed``.

        The JSON is found even inside code fences or prose. If there is none, it is invalid or cut off
        (``finish_reason == "length"``), or ``validator`` rejects it (ValueError, TypeError or KeyError, such
        as an ExplanationError), the bad reply and a request for valid JSON only (with ``schema_hint``) are
        appended and the model is asked ONCE more; then LLMResponseError is raised with the last reply in
        ``raw_text``. Replies are cached only when the call succeeds, so a re-run replays it exactly.
        ``json_schema`` is sent as a ``json_schema`` response format (structured output: llama.cpp, vLLM and
        OpenAI constrain the sampler to it); a server that refuses the schema (HTTP 400/422 naming it) is asked
        again without, and no schema is sent to it for the rest of the client's life.
        """
        tag = tag if tag is not None else current_tag()
        if json_schema is not None and not self._schema_ok:
            json_schema = None  # this server refused a schema once: ask for plain JSON (the validator still checks)
        with self._accounting(tag):
            body = self._chat_body(messages, json_schema, None, False, None, params)
            try:
                first = await self._exchange("chat/completions", body, tag, use_cache)
            except LLMHTTPError as exc:
                if json_schema is None or exc.status not in (400, 422) or not _SCHEMA_REFUSAL.search(str(exc)):
                    raise
                logger.warning("the server refused a JSON-schema response_format (%s); sending none from now on",
                               exc)
                self._schema_ok = False
                body.pop("response_format", None)
                first = await self._exchange("chat/completions", body, tag, use_cache)
            result = chat_result(first.data, want_logprobs=False, where=self._url(first.endpoint),
                                 cached=first.cached, request_id=first.request_id)
            parsed, problem = _check_json(result, validator, expect)
            if problem is None:
                self._store([first])
                return replace(result, parsed=parsed)
            logger.info("LLM reply is not usable JSON (%s); asking once more", problem)
            fix = [*messages, {"role": "assistant", "content": result.text},
                   {"role": "user", "content": _correction(problem, schema_hint)}]
            second = await self._exchange("chat/completions", {**body, "messages": fix}, tag, use_cache)
            retried = chat_result(second.data, want_logprobs=False, where=self._url(second.endpoint),
                                  cached=second.cached, request_id=second.request_id)
            parsed, problem = _check_json(retried, validator, expect)
            if problem is not None:
                raise LLMResponseError(f"no usable JSON after one corrective retry: {problem}",
                                       raw_text=retried.text, finish_reason=retried.finish_reason,
                                       request_id=retried.request_id)
            self._store([first, second])
            return replace(retried, parsed=parsed, attempts=2, usage=result.usage + retried.usage,
                           cached=first.cached and second.cached)

    async def complete(self, prompt: str | Sequence[int], *, logprobs: int | None = None, echo: bool = False,
                       max_tokens: int | None = None, tag: str | None = None, use_cache: bool = True,
                       **params: Any) -> CompletionResult:
        """One text completion from ``/completions``; ``logprobs`` = how many alternatives per token (0 for none
        but the token's own). ``echo`` returns the prompt's tokens first, which with ``max_tokens=0`` scores a
        text without generating. A server that returns no logprobs raises :class:`LLMLogprobsUnavailable`.
        """
        tag = tag if tag is not None else current_tag()
        body = self._base_body({**params, "max_tokens": max_tokens} if max_tokens is not None else params)
        body["prompt"] = prompt if isinstance(prompt, str) else list(prompt)
        if logprobs is not None:
            body["logprobs"] = logprobs
        if echo:
            body["echo"] = True
        with self._accounting(tag):
            ex = await self._exchange("completions", body, tag, use_cache)
            result = completion_result(ex.data, want_logprobs=logprobs is not None, where=self._url(ex.endpoint),
                                       cached=ex.cached, request_id=ex.request_id)
            self._store([ex])
            return result

    # ------------------------------------------------------------------------------------------- internals

    def _url(self, endpoint: str) -> str:
        return f"{self._root}/{endpoint}"

    def _base_body(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if params.get("stream"):
            raise ConfigError("stream=True is not supported: the client reads whole responses")
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "temperature": cfg.temperature}
        if "max_completion_tokens" not in params:  # newer OpenAI models take this instead of max_tokens
            body["max_tokens"] = cfg.max_tokens
        body.update(params)
        body.pop("stream", None)
        return {k: v for k, v in body.items() if v is not None}

    def _chat_body(self, messages: Sequence[Mapping[str, Any]], json_schema: Mapping[str, Any] | None,
                   response_format: Mapping[str, Any] | None, logprobs: bool, top_logprobs: int | None,
                   params: Mapping[str, Any]) -> dict[str, Any]:
        if json_schema is not None and response_format is not None:
            raise ConfigError("pass json_schema or response_format, not both")
        body = self._base_body(params)
        body["messages"] = [dict(m) for m in messages]
        if json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "response", "schema": dict(json_schema)}}
        elif response_format is not None:
            body["response_format"] = dict(response_format)
        if logprobs:
            body["logprobs"] = True
            if top_logprobs is not None:
                body["top_logprobs"] = top_logprobs
        return body

    @contextmanager
    def _accounting(self, tag: str | None) -> Iterator[None]:
        self.usage.record(tag, calls=1)
        try:
            yield
        except LLMError:
            self.usage.record(tag, errors=1)
            raise

    async def _exchange(self, endpoint: str, body: dict[str, Any], tag: str | None, use_cache: bool) -> _Exchange:
        """The response for ``body``: from the cache, or from the server (then ``key`` marks it for storing)."""
        key = None
        if use_cache and self._cache is not None:
            key = self._cache.key(endpoint, body)
            hit = self._cache.get(key)
            if hit is not None:
                self.usage.record(tag, cache_hits=1)
                return _Exchange(endpoint, hit.response, hit.request_id, cached=True)
        data, request_id = await self._post(endpoint, body, tag)
        return _Exchange(endpoint, data, request_id, cached=False, key=key)

    def _store(self, exchanges: Sequence[_Exchange]) -> None:
        """Caches accepted responses; called only once the whole call succeeded, so errors are never cached."""
        if self._cache is None:
            return
        for ex in exchanges:
            if ex.key is not None:
                self._cache.put(ex.key, endpoint=ex.endpoint, model=self.config.model, response=ex.data,
                                request_id=ex.request_id)

    async def _post(self, endpoint: str, body: dict[str, Any], tag: str | None) -> tuple[Any, str | None]:
        """POSTs ``body``, retrying transient failures; returns (response JSON, request id)."""
        if self._http is None or self._sem is None:
            raise LLMError("LLMClient is not open: use `async with LLMClient(config) as llm:`")
        cfg, url = self.config, self._url(endpoint)
        failure: LLMHTTPError | LLMTimeout | LLMConnectionError
        for attempt in range(cfg.max_retries + 1):
            self.usage.record(tag, requests=1, retries=int(attempt > 0))
            try:
                async with self._sem, deadline(cfg.request_deadline_s):
                    response = await post_capped(self._http, url, body, cfg.max_response_bytes, self._secrets)
            except httpx.TimeoutException as exc:
                failure = LLMTimeout(url, cfg.timeout_s)
                failure.__cause__ = exc
            except asyncio.TimeoutError:  # the deadline, however the server paced its bytes
                failure = LLMTimeout(url, cfg.timeout_s, deadline_s=cfg.request_deadline_s)
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failure = LLMConnectionError(url, redact(repr(exc), self._secrets))
                failure.__cause__ = exc
            else:
                request_id = redact(response.headers.get("x-request-id"), self._secrets)
                try:
                    data = redact_json(response.json(), self._secrets)
                except ValueError:
                    data = None
                ok = response.status_code == 200 and isinstance(data, Mapping)
                if ok and "error" not in data:
                    usage = token_usage(data)
                    self.usage.record(tag, prompt_tokens=usage.prompt_tokens,
                                      completion_tokens=usage.completion_tokens)
                    return data, request_id
                if response.status_code == 200 and not ok:
                    raise LLMResponseError(f"{url} answered HTTP 200 with a body that is not a JSON object: "
                                           f"{redact(server_message(response, None), self._secrets)}",
                                           request_id=request_id)
                failure = self._http_error(url, response, data, request_id)
                if not retryable_status(failure.status):
                    failure.attempts = attempt + 1
                    raise failure
            if attempt < cfg.max_retries:
                delay = self._backoff(attempt, getattr(failure, "retry_after", None))
                logger.warning("%s; retry %d/%d in %.2f s", failure, attempt + 1, cfg.max_retries, delay)
                await asyncio.sleep(delay)
        failure.attempts = cfg.max_retries + 1
        raise failure

    def _http_error(self, url: str, response: httpx.Response, data: Any, request_id: str | None) -> LLMHTTPError:
        status = response.status_code
        if status == 200:  # OpenRouter reports some failures as 200 with {"error": {"code": ...}}
            code = data["error"].get("code") if isinstance(data.get("error"), Mapping) else None
            status = code if isinstance(code, int) and 400 <= code < 600 else 502
        hint = ""
        if status in (401, 403):
            env = self.config.api_key_env
            state = "set" if env and os.environ.get(env) else "not set"
            hint = f" (API key read from ${env}, which is {state})" if env else " (no api_key_env configured)"
        cls = LLMRateLimited if status == 429 else LLMHTTPError
        return cls(url, status, redact(server_message(response, data), self._secrets), request_id=request_id,
                   retry_after=retry_after_seconds(response.headers), hint=hint)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter (spreads clients that failed together); a server's Retry-After is a floor, not a guess."""
        cfg = self.config
        jitter = random.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0**attempt))
        if retry_after is None:
            return jitter
        return min(retry_after, cfg.retry_after_max_s) + jitter


def _check_json(result: ChatResult, validator: Callable[[Any], Any] | None,
                expect: Literal["object", "array"] | None) -> tuple[Any, str | None]:
    """(value, None) when ``result`` holds acceptable JSON, else (None, why not)."""
    if result.finish_reason == "length":
        return None, "the reply was cut off at the token limit before the JSON was complete"
    try:
        value = extract_json(result.text, expect=expect)
    except LLMResponseError as exc:
        return None, str(exc)
    if validator is not None:
        try:
            value = validator(value)
        except (ValueError, TypeError, KeyError) as exc:
            return None, f"the JSON does not have the expected shape: {exc}"
    return value, None


def _correction(problem: str, schema_hint: str | None) -> str:
    shape = f" It must match: {schema_hint}." if schema_hint else ""
    return (f"Your previous reply could not be used: {problem}. Reply again with only the JSON, complete and "
            f"valid, with no prose and no code fences, short enough to fit.{shape}")
