"""Token, request, cache and cost accounting for LLM calls, per tag (e.g. one neuron, ``"3/17"``) and per run.

A call's tag is either passed explicitly or taken from :func:`usage_tag`, a context variable: asyncio tasks
copy the context they are created in, so ``with usage_tag("3/17"): await explain(...)`` tags every call that
neuron's agents make, however deeply nested, without threading a tag argument through them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

_current_tag: ContextVar[str | None] = ContextVar("neuronscope_llm_usage_tag", default=None)


@contextmanager
def usage_tag(tag: str) -> Iterator[None]:
    """Tags every LLM call made inside the block (in this task and tasks it creates) with ``tag``."""
    token = _current_tag.set(tag)
    try:
        yield
    finally:
        _current_tag.reset(token)


def current_tag() -> str | None:
    """The tag set by the innermost enclosing :func:`usage_tag`, if any."""
    return _current_tag.get()


@dataclass
class UsageStats:
    """Counters for one tag or for a whole run."""

    calls: int = 0
    """Logical calls (``chat``, ``chat_json``, ``complete``), however many requests each took."""
    requests: int = 0
    """HTTP requests sent, retries included; cache hits send none."""
    retries: int = 0
    cache_hits: int = 0
    errors: int = 0
    """Calls that ended in an error after the allowed retries."""
    prompt_tokens: int = 0
    """Tokens the server reported for requests actually sent (cache hits cost nothing and add nothing)."""
    completion_tokens: int = 0

    def add(self, other: UsageStats) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


class Usage:
    """Thread-safe usage accumulator for one run; prices (USD per 1,000 tokens) are optional."""

    def __init__(self, price_prompt_per_1k: float | None = None,
                 price_completion_per_1k: float | None = None) -> None:
        self.price_prompt_per_1k = price_prompt_per_1k
        self.price_completion_per_1k = price_completion_per_1k
        self._lock = threading.Lock()
        self._total = UsageStats()
        self._by_tag: dict[str, UsageStats] = {}

    def record(self, tag: str | None, **counts: int) -> None:
        """Adds ``counts`` (UsageStats field names) to the run total and, when tagged, to ``tag``."""
        delta = UsageStats(**counts)
        with self._lock:
            self._total.add(delta)
            if tag is not None:
                self._by_tag.setdefault(tag, UsageStats()).add(delta)

    @property
    def total(self) -> UsageStats:
        with self._lock:
            return UsageStats(**asdict(self._total))

    def for_tag(self, tag: str) -> UsageStats:
        """A copy of the counters of ``tag`` (all zero if it made no call)."""
        with self._lock:
            return UsageStats(**asdict(self._by_tag.get(tag, UsageStats())))

    @property
    def tags(self) -> list[str]:
        with self._lock:
            return list(self._by_tag)

    def cost_usd(self, stats: UsageStats) -> float | None:
        """Cost of ``stats``' tokens; None when no price is configured (unknown, rather than free)."""
        if self.price_prompt_per_1k is None and self.price_completion_per_1k is None:
            return None
        return (stats.prompt_tokens * (self.price_prompt_per_1k or 0.0)
                + stats.completion_tokens * (self.price_completion_per_1k or 0.0)) / 1000.0

    def as_dict(self, stats: UsageStats) -> dict[str, Any]:
        """``stats`` as a JSON-ready dict with ``total_tokens`` and ``cost_usd`` added."""
        out: dict[str, Any] = asdict(stats)
        out["total_tokens"] = stats.prompt_tokens + stats.completion_tokens
        out["cost_usd"] = self.cost_usd(stats)
        return out

    def summary_for(self, tag: str) -> dict[str, Any]:
        """One tag's usage as a JSON-ready dict (what a neuron's output line records)."""
        return self.as_dict(self.for_tag(tag))

    def summary(self) -> dict[str, Any]:
        """``{"total": {...}, "by_tag": {tag: {...}}}``, JSON-ready."""
        with self._lock:
            total = UsageStats(**asdict(self._total))
            by_tag = {t: UsageStats(**asdict(s)) for t, s in self._by_tag.items()}
        return {"total": self.as_dict(total), "by_tag": {t: self.as_dict(s) for t, s in by_tag.items()}}
