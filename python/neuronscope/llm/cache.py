"""On-disk cache of LLM responses (sqlite), so that a re-run or a resumed run sends no request already answered.

The key is the sha256 of the canonical JSON of (endpoint, model, request body); fields that do not change the
answer (``stream``, and any credential a caller might have put in the body) are left out. Only responses the
client accepted are stored: errors never are, so a re-run retries exactly what failed. Requests and API keys
are not stored at all, only the key's hash and the response, with anything shaped like a credential redacted
(``redact.py``; the client has already removed its own key from it).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LLMError
from .redact import redact_json

_FORMAT_VERSION = 1
# Not part of what the server answers, or secret: never hashed, so never a reason for a cache miss.
_IGNORED_FIELDS = frozenset({"stream", "stream_options", "api_key"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    request_id TEXT,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class CachedResponse:
    response: dict[str, Any]
    """The server's response JSON, as received."""
    request_id: str | None


class ResponseCache:
    """A sqlite file of responses keyed by request hash; safe to share between threads and asyncio tasks.

    Operations are single-row and take well under a millisecond in WAL mode, so they run inline under a lock
    rather than in a thread pool: the event loop is held for less time than a thread hand-off would take.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _FORMAT_VERSION):
                self._db.close()
                raise LLMError(f"response cache {self.path} has format version {version}; "
                               f"this neuronscope reads version {_FORMAT_VERSION}")
            # WAL lets several processes read while one writes; NORMAL durability is enough for a cache.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={_FORMAT_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise LLMError(f"cannot open response cache {self.path}: {exc}") from exc

    @staticmethod
    def key(endpoint: str, body: Mapping[str, Any]) -> str:
        """sha256 (hex) of the canonical JSON of (endpoint, model, body minus stream/credential fields)."""
        kept = {k: v for k, v in body.items() if k not in _IGNORED_FIELDS}
        canonical = json.dumps({"endpoint": endpoint.strip("/"), "model": body.get("model"), "body": kept},
                               sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            row = self._db.execute("SELECT response, request_id FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return CachedResponse(json.loads(row[0]), row[1])

    def put(self, key: str, *, endpoint: str, model: str, response: Mapping[str, Any],
            request_id: str | None = None) -> None:
        """Stores (or replaces) the response for ``key``; call it only for responses that were accepted."""
        payload = json.dumps(redact_json(response), ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, endpoint, model, request_id, response, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", (key, endpoint, model, request_id, payload, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"
