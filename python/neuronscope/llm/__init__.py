"""LLM access for the agents: an async client for any OpenAI-compatible server, with retries, a response
cache, usage accounting and tolerant JSON parsing.

``config`` (LLMConfig), ``client`` (LLMClient), ``errors`` (the LLMError family and how a failed HTTP answer
is read), ``parse`` (result types, logprobs, JSON in free text), ``cache``, ``usage``.
"""

from __future__ import annotations

from .cache import CachedResponse, ResponseCache
from .client import LLMClient
from .config import LLMConfig, normalize_base_url
from .errors import (
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMLogprobsUnavailable,
    LLMRateLimited,
    LLMResponseError,
    LLMResponseTooLarge,
    LLMTimeout,
    retry_after_seconds,
)
from .parse import ChatResult, CompletionResult, TokenLogprob, TokenUsage, extract_json
from .usage import Usage, UsageStats, current_tag, usage_tag

__all__ = [
    "CachedResponse",
    "ChatResult",
    "CompletionResult",
    "LLMClient",
    "LLMConfig",
    "LLMConnectionError",
    "LLMError",
    "LLMHTTPError",
    "LLMLogprobsUnavailable",
    "LLMRateLimited",
    "LLMResponseError",
    "LLMResponseTooLarge",
    "LLMTimeout",
    "ResponseCache",
    "TokenLogprob",
    "TokenUsage",
    "Usage",
    "UsageStats",
    "current_tag",
    "extract_json",
    "normalize_base_url",
    "retry_after_seconds",
    "usage_tag",
]
