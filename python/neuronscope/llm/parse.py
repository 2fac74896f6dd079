"""Reading an OpenAI-compatible server's replies: result types, per-token logprobs, and JSON inside free text.

Everything here is pure (no I/O), so the client's retry logic and the agents' parsing can be tested apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import LLMLogprobsUnavailable, LLMResponseError


@dataclass(frozen=True)
class TokenLogprob:
    """One generated (or echoed) token with its log-probability and the most likely alternatives."""

    token: str
    logprob: float | None
    """None only for the first echoed prompt token of a completion, which has no context to be scored in."""
    top_logprobs: tuple[TokenLogprob, ...] = ()
    """Alternatives at this position, most likely first (their own ``top_logprobs`` are empty)."""
    text_offset: int | None = None
    """Character offset of the token in prompt + completion (completions endpoint only)."""


@dataclass(frozen=True)
class TokenUsage:
    """Tokens the server reports having processed for one result (0 when it reports nothing)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class ChatResult:
    """A chat completion (first choice)."""

    text: str
    finish_reason: str | None
    usage: TokenUsage
    """Tokens of every exchange behind this result (both, after a corrective retry)."""
    model: str
    cached: bool = False
    """True when every exchange behind this result came from the response cache."""
    request_id: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    """One entry per generated token when logprobs were requested, else None."""
    parsed: Any = None
    """The JSON value found in ``text`` (after the validator, if any) when JSON was asked for."""
    attempts: int = 1
    """Model replies it took: 2 when a corrective retry for malformed JSON was needed."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The server's response JSON, for debugging."""


@dataclass(frozen=True)
class CompletionResult:
    """A text completion (first choice) from ``/v1/completions``."""

    text: str
    finish_reason: str | None
    usage: TokenUsage
    model: str
    cached: bool = False
    request_id: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    """Per token (prompt tokens first when ``echo`` was set) when logprobs were requested, else None."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def token_usage(data: Mapping[str, Any]) -> TokenUsage:
    """The ``usage`` block of a response; missing or odd values count as 0 (some servers omit it)."""
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return TokenUsage()

    def count(name: str) -> int:
        value = usage.get(name)
        return int(value) if isinstance(value, (int, float)) and value > 0 else 0

    return TokenUsage(count("prompt_tokens"), count("completion_tokens"))


def _first_choice(data: Any, where: str) -> Mapping[str, Any]:
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise LLMResponseError(f"malformed response from {where}: no choices in {_preview(data)}")
    return choices[0]


def _preview(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _no_logprobs(where: str, model: str, text: str, finish_reason: str | None, request_id: str | None):
    return LLMLogprobsUnavailable(
        f"server returned no logprobs from {where} (model {model!r}); it or the model may not support them: "
        "use a JSON-output simulator instead", raw_text=text, finish_reason=finish_reason, request_id=request_id)


def _content_logprobs(content: list[Any]) -> tuple[TokenLogprob, ...]:
    """The chat format: ``[{token, logprob, top_logprobs: [{token, logprob}, ...]}, ...]``."""
    out = []
    for entry in content:
        tops = tuple(TokenLogprob(str(t["token"]), float(t["logprob"])) for t in entry.get("top_logprobs") or ())
        out.append(TokenLogprob(str(entry["token"]), float(entry["logprob"]), tops))
    return tuple(out)


def _legacy_logprobs(lp: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    """The completions format: parallel lists ``tokens``, ``token_logprobs``, ``top_logprobs`` (dicts) and
    ``text_offset``."""
    tokens = lp.get("tokens") or []
    n = len(tokens)
    values = lp.get("token_logprobs") or [None] * n
    tops = lp.get("top_logprobs") or [None] * n
    offsets = lp.get("text_offset") or [None] * n
    if not len(values) == len(tops) == len(offsets) == n:
        raise ValueError("logprobs lists of different lengths")
    out = []
    for token, value, top, offset in zip(tokens, values, tops, offsets, strict=True):
        alts = sorted(((str(t), float(v)) for t, v in (top or {}).items()), key=lambda tv: -tv[1])
        out.append(TokenLogprob(str(token), None if value is None else float(value),
                                tuple(TokenLogprob(t, v) for t, v in alts),
                                None if offset is None else int(offset)))
    return tuple(out)


def chat_result(data: Any, *, want_logprobs: bool, where: str, cached: bool = False,
                request_id: str | None = None) -> ChatResult:
    """Builds a ChatResult from a ``/chat/completions`` response; raises LLMResponseError if it is unusable."""
    choice = _first_choice(data, where)
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    text = content if isinstance(content, str) else ""
    finish = choice.get("finish_reason")
    model = str(data.get("model") or "")
    request_id = request_id or data.get("id")
    logprobs = None
    if want_logprobs:
        lp = choice.get("logprobs")
        entries = lp.get("content") if isinstance(lp, Mapping) else None
        if not entries:
            raise _no_logprobs(where, model, text, finish, request_id)
        try:
            logprobs = _content_logprobs(entries)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LLMResponseError(f"malformed logprobs from {where}: {exc!r}", raw_text=text,
                                   request_id=request_id) from exc
    return ChatResult(text=text, finish_reason=finish, usage=token_usage(data), model=model, cached=cached,
                      request_id=request_id, logprobs=logprobs, raw=data)


def completion_result(data: Any, *, want_logprobs: bool, where: str, cached: bool = False,
                      request_id: str | None = None) -> CompletionResult:
    """Builds a CompletionResult from a ``/completions`` response; raises LLMResponseError if it is unusable."""
    choice = _first_choice(data, where)
    text = choice.get("text") if isinstance(choice.get("text"), str) else ""
    finish = choice.get("finish_reason")
    model = str(data.get("model") or "")
    request_id = request_id or data.get("id")
    logprobs = None
    if want_logprobs:
        lp = choice.get("logprobs")
        try:
            # llama.cpp-style servers may use the chat format on this endpoint too.
            if isinstance(lp, Mapping) and lp.get("content"):
                logprobs = _content_logprobs(lp["content"])
            elif isinstance(lp, Mapping) and lp.get("tokens"):
                logprobs = _legacy_logprobs(lp)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LLMResponseError(f"malformed logprobs from {where}: {exc!r}", raw_text=text,
                                   request_id=request_id) from exc
        if not logprobs:
            raise _no_logprobs(where, model, text, finish, request_id)
    return CompletionResult(text=text, finish_reason=finish, usage=token_usage(data), model=model, cached=cached,
                            request_id=request_id, logprobs=logprobs, raw=data)


# Reasoning models (DeepSeek-R1, Qwen3, ...) may think aloud before answering; their braces are not the answer.
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_CLOSER = {"{": "}", "[": "]"}


def _span(text: str, start: int) -> tuple[int, Literal["closed", "mismatched", "open"]]:
    """Scans the bracketed value opening at ``text[start]``, respecting strings; returns (end, how it ended)."""
    stack: list[str] = []
    in_string = escaped = False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in _CLOSER:
            stack.append(_CLOSER[c])
        elif c in "}]":
            if c != stack.pop():
                return i + 1, "mismatched"
            if not stack:
                return i + 1, "closed"
    return len(text), "open"


def extract_json(text: str, *, expect: Literal["object", "array"] | None = None) -> Any:
    """The JSON value in a model's reply, tolerating code fences, leading or trailing prose and ``<think>`` blocks.

    Tries, in order: the whole reply; each fenced block; the first balanced ``{...}``/``[...]`` that parses
    (``expect`` restricts this to objects or arrays). A bracketed span that does not parse is skipped as a
    whole, never searched inside, so a fragment of broken JSON is not mistaken for the answer.

    Raises LLMResponseError (``raw_text`` = ``text``) naming why nothing was found: no JSON at all, a value
    cut off before its end (truncated), or invalid JSON.
    """
    wanted = {"object": dict, "array": list, None: (dict, list)}[expect]
    openers = {"object": "{", "array": "[", None: "{["}[expect]
    cleaned = _THINK.sub("", text).strip()
    for candidate in (cleaned, *(m.group(1).strip() for m in _FENCE.finditer(cleaned))):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, wanted):
            return value
    last_error: str | None = None
    pos = 0
    while True:
        starts = [i for i in (cleaned.find(o, pos) for o in openers) if i >= 0]
        if not starts:
            break
        start = min(starts)
        end, how = _span(cleaned, start)
        if how == "open":
            raise LLMResponseError("the reply was cut off inside a JSON value (unbalanced brackets)", raw_text=text)
        if how == "closed":
            try:
                return json.loads(cleaned[start:end])
            except ValueError as exc:
                last_error = f"invalid JSON: {exc}"
        pos = end
    raise LLMResponseError(last_error or f"no JSON {expect or 'object or array'} in the reply", raw_text=text)
