"""The LLM client's errors, and how a failed HTTP answer is read: its message, whether it may pass, how long to wait.

Every class here is an :class:`~neuronscope.errors.LLMError`, hence a
:class:`~neuronscope.errors.NeuronscopeError`: one family for the whole package. A caller that only needs to
know that the LLM failed catches ``LLMError``; the subclasses say how.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ..errors import LLMError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "LLMConnectionError",
    "LLMError",
    "LLMHTTPError",
    "LLMLogprobsUnavailable",
    "LLMRateLimited",
    "LLMResponseError",
    "LLMResponseTooLarge",
    "LLMTimeout",
    "retry_after_seconds",
    "retryable_status",
    "server_message",
]


class LLMHTTPError(LLMError):
    """The server answered with an error status (after the allowed retries, when the status is transient)."""

    def __init__(self, url: str, status: int, server_message: str, *, request_id: str | None = None,
                 retry_after: float | None = None, hint: str = "") -> None:
        super().__init__(url, status, server_message)
        self.url, self.status, self.server_message = url, status, server_message
        self.request_id, self.retry_after, self.hint = request_id, retry_after, hint
        self.attempts = 1

    def __str__(self) -> str:
        return f"{self.url} answered HTTP {self.status}: {self.server_message}{self.hint}{_gave_up(self.attempts)}"


class LLMRateLimited(LLMHTTPError):
    """HTTP 429 on every attempt."""


class LLMTimeout(LLMError):
    """No complete answer within ``timeout_s`` (one phase) or ``deadline_s`` (the whole answer), on every attempt."""

    def __init__(self, url: str, timeout_s: float, deadline_s: float | None = None) -> None:
        super().__init__(url, timeout_s)
        self.url, self.timeout_s, self.deadline_s, self.attempts = url, timeout_s, deadline_s, 1

    def __str__(self) -> str:
        if self.deadline_s is not None:
            return (f"{self.url} sent no complete answer within the deadline (deadline_s={self.deadline_s:g}): "
                    f"the server is stalled or pacing its bytes{_gave_up(self.attempts)}")
        return f"request to {self.url} timed out (timeout_s={self.timeout_s}){_gave_up(self.attempts)}"


class LLMConnectionError(LLMError):
    """The connection could not be made or was dropped before an answer, on every attempt."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(url, detail)
        self.url, self.detail, self.attempts = url, detail, 1

    def __str__(self) -> str:
        return f"connection to {self.url} failed: {self.detail}{_gave_up(self.attempts)}"


class LLMResponseError(LLMError):
    """The server answered, but the answer is unusable: malformed, truncated, or missing what was asked for.

    The reply text is kept in ``raw_text`` so that a caller can record what the model actually said.
    """

    def __init__(self, message: str, *, raw_text: str | None = None, finish_reason: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.raw_text = raw_text
        self.finish_reason = finish_reason
        self.request_id = request_id


class LLMResponseTooLarge(LLMResponseError):
    """The response body grew past ``max_response_bytes`` (an endless or huge body): unusable, not retried."""

    def __init__(self, url: str, limit: int, request_id: str | None = None) -> None:
        super().__init__(f"{url} sent a response body of more than {limit} bytes (max_response_bytes); an LLM "
                         "reply is a few kB, so the server is misbehaving (or raise max_response_bytes)",
                         request_id=request_id)
        self.url, self.limit = url, limit


class LLMLogprobsUnavailable(LLMResponseError):
    """Logprobs were requested and the server returned none: the caller should fall back to a JSON simulator."""


def _gave_up(attempts: int) -> str:
    return f" (gave up after {attempts} attempts)" if attempts > 1 else ""


def retryable_status(status: int) -> bool:
    """True for the statuses that may pass on a later attempt: 408, 429 and 5xx."""
    return status in (408, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a server asks for: ``retry-after-ms`` (OpenAI), else ``Retry-After`` in seconds or as an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT by definition
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def server_message(response: httpx.Response, data: Any) -> str:
    """The error message in OpenAI's ``{"error": {"message"}}``, Ollama's ``{"error": "..."}``, vLLM's
    ``{"message"}`` shapes, else the start of the body."""
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if data.get("message"):
            return str(data["message"])
    text = response.text.strip()
    return (text[:500] + "…" if len(text) > 500 else text) or response.reason_phrase or "(empty body)"
