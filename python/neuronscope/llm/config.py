"""Where and how to reach an OpenAI-compatible server: :class:`LLMConfig`, validated when it is made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError


@dataclass(kw_only=True)
class LLMConfig:
    """Where and how to reach an OpenAI-compatible server. It holds the *name* of the key variable, never the key."""

    base_url: str = "http://localhost:8000/v1"
    """``http://host:port`` (``/v1`` is appended) or a full API root such as ``https://openrouter.ai/api/v1``."""
    model: str
    """Model name as the server knows it (``gpt-4o-mini``, ``meta-llama/Llama-3.1-8B-Instruct``, ``llama3.1``)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Environment variable holding the API key; when unset or empty no Authorization is sent (vLLM, Ollama)."""
    concurrency: int = 8
    """Requests in flight at most."""
    timeout_s: float = 120.0
    """Per phase of a request: connect, write, and each read."""
    deadline_s: float | None = None
    """The whole answer of one attempt (connect, send, headers and the complete body) must arrive within this,
    however the server paces its bytes; None: 1.5 x ``timeout_s``. Past it the attempt is a timeout, retried
    like one, so a call takes at most about (``max_retries`` + 1) x deadline plus the backoff."""
    max_response_bytes: int = 16 << 20
    """Largest response body read (decoded bytes); a larger or endless one is an unusable response (not
    retried), so a misbehaving server cannot fill memory."""
    max_retries: int = 5
    """Retries after the first attempt, for transient failures only."""
    backoff_base_s: float = 1.0
    """Retry ``n`` (from 0) waits uniform(0, min(backoff_max_s, backoff_base_s * 2**n)): full jitter."""
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0
    """A longer ``Retry-After`` is shortened to this (a daily quota would otherwise stall the run for hours)."""
    temperature: float | None = 0.0
    """None sends none (some reasoning models reject the field)."""
    max_tokens: int | None = 1024
    """Default completion budget; None sends none."""
    price_prompt_per_1k: float | None = None
    """USD per 1,000 prompt tokens, for cost accounting (None: cost unknown)."""
    price_completion_per_1k: float | None = None
    cache_path: str | Path | None = None
    """sqlite response cache; None disables caching."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model must name the server's model")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ConfigError(f"deadline_s must be > 0 or None, got {self.deadline_s}")
        if self.max_response_bytes < 1:
            raise ConfigError(f"max_response_bytes must be >= 1, got {self.max_response_bytes}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.retry_after_max_s < 0:
            raise ConfigError("backoff_base_s, backoff_max_s and retry_after_max_s must be >= 0")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1 or None, got {self.max_tokens}")
        for name in ("price_prompt_per_1k", "price_completion_per_1k"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"{name} must be >= 0")
        normalize_base_url(self.base_url)

    @property
    def request_deadline_s(self) -> float:
        """``deadline_s``, or its default derived from ``timeout_s``."""
        return self.deadline_s if self.deadline_s is not None else 1.5 * self.timeout_s

    @property
    def api_root(self) -> str:
        """The normalised base URL that endpoint paths are appended to (``.../v1``)."""
        return normalize_base_url(self.base_url)


def normalize_base_url(url: str) -> str:
    """``http://host:port`` → ``http://host:port/v1``; a URL with a path is kept (minus a trailing slash)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base_url must be an http(s) URL such as http://localhost:8000/v1, got {url!r}")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path or '/v1'}"
