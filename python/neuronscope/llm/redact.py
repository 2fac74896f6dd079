"""Secrets out of everything written: what a server says is stored (transcripts, rows, the cache, error
messages), and a server may echo the request's Authorization header back.

:func:`redact` replaces the configured API key wherever it appears, and anything shaped like a credential
(``Bearer <token>``, ``Authorization: …``, ``sk-…``/``hf_…`` style keys) with :data:`REDACTED`. The client
applies it to every response as it arrives, so nothing downstream ever holds the key; the writers of
transcripts and failure rows apply it again as a second line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
_MIN_SECRET = 8
"""A configured key shorter than this is only caught by the patterns (replacing a short string everywhere would
corrupt ordinary text)."""
_PATTERNS = [
    # "Bearer <token>": a token has a digit or punctuation in it ("bearer bonds" stays).
    (re.compile(r"(?i)\b(bearer\s+)(?=[A-Za-z]*[0-9._~+/=:-])[A-Za-z0-9._~+/=:-]{8,}"), rf"\1{REDACTED}"),
    # "Authorization: …", "x-api-key=…", '"api_key": "…"' (a header or field echoed back)
    (re.compile(r"(?i)\b((?:proxy-)?authorization|x-api-key|api[-_]key)(\s*[\"']?\s*[:=]\s*[\"']?\s*)"
                r"(?:bearer\s+)?[^\s\"',;}]{6,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(?:hf|gsk|xai|ghp|gho|github_pat)_[A-Za-z0-9_]{16,}"), REDACTED),
]


def secrets_from_env(names: Iterable[str | None]) -> tuple[str, ...]:
    """The values of the named environment variables that are set (the keys a run may send)."""
    return tuple(v for n in names if n and (v := os.environ.get(n)))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret in ``secrets`` and every credential-shaped string replaced by REDACTED."""
    if not isinstance(text, str) or not text:
        return text
    for s in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    for rx, sub in _PATTERNS:
        text = rx.sub(sub, text)
    return text


def redact_json(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON value with :func:`redact` applied to every string in it (keys included)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact(k, secrets) if isinstance(k, str) else k: redact_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v, secrets) for v in value]
    return value
