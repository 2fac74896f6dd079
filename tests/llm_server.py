"""A scripted OpenAI-compatible HTTP server on a real local socket, for protocol tests.

    with ScriptedServer() as server:
        server.push(status=429, headers={"Retry-After": "0.2"}, json={"error": {"message": "slow down"}})
        server.push(json=chat_body("hello"))
        ... LLMConfig(base_url=server.url, ...) ...
        assert len(server.requests) == 2

Replies are served in the order pushed, whatever the path (``/v1/chat/completions`` or ``/v1/completions``);
when none is left, the ``default`` responder (if any) answers, else a 418 naming the exhausted script. Every
request is recorded with its arrival and answer times, and the most requests ever in flight at once is kept.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTES = ("/v1/chat/completions", "/v1/completions")


@dataclass
class Reply:
    """What the server answers to one request."""

    status: int = 200
    json: Any = None
    """Body, serialised as JSON (ignored when ``raw`` is set)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (longer than the client's timeout to provoke one)."""
    raw: bytes | str | None = None
    """Body sent verbatim (for non-JSON or broken bodies)."""
    close: bool = False
    """Drop the connection without answering (after ``delay``)."""


@dataclass
class Request:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: Any
    """Parsed JSON, or None when the body is not JSON."""
    raw: bytes
    received: float
    """``time.monotonic()`` at arrival."""
    answered: float | None = None
    """``time.monotonic()`` just before the answer was written (None if it never was)."""


def chat_body(content: str | None, *, finish_reason: str = "stop", logprobs: list[Any] | None = None,
              prompt_tokens: int = 10, completion_tokens: int = 5, model: str = "scripted") -> dict[str, Any]:
    """An OpenAI chat completion response; ``logprobs`` is the ``content`` list of the chat logprobs format."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "model": model, "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def completion_body(text: str, *, logprobs: Mapping[str, Any] | None = None, finish_reason: str = "stop",
                    prompt_tokens: int = 10, completion_tokens: int = 5, model: str = "scripted") -> dict[str, Any]:
    """An OpenAI text completion response; ``logprobs`` is the legacy ``{tokens, token_logprobs, ...}`` block."""
    return {"id": "cmpl-scripted", "object": "text_completion", "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as real servers do, so the client's connection pool is exercised.
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        self.server.script.handle(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: ScriptedServer


class ScriptedServer:
    """Context manager running the server in a background thread on ``127.0.0.1`` and a free port."""

    def __init__(self, default: Callable[[Request], Reply | None] | None = None) -> None:
        self.default = default
        self._queue: deque[Reply] = deque()
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the client appends ``/v1``)."""
        if self._server is None:
            raise RuntimeError("ScriptedServer is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[Request]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Pushed replies not served yet."""
        with self._lock:
            return len(self._queue)

    def push(self, status: int = 200, json: Any = None, headers: Mapping[str, str] | None = None,
             delay: float = 0.0, raw: bytes | str | None = None, close: bool = False) -> None:
        """Queues the reply to the next unanswered request."""
        with self._lock:
            self._queue.append(Reply(status, json, dict(headers or {}), delay, raw, close))

    def push_chat(self, content: str | None, **kwargs: Any) -> None:
        """Queues a 200 chat completion (``kwargs`` go to :func:`chat_body`)."""
        self.push(json=chat_body(content, **kwargs))

    def __enter__(self) -> ScriptedServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.script = self
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="scripted-llm-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # wakes handlers still sleeping on a delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _next_reply(self, request: Request) -> Reply:
        if request.path not in ROUTES:
            return Reply(404, {"error": {"message": f"scripted server: no route {request.path}"}})
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
        if reply is None and self.default is not None:
            reply = self.default(request)
        # 418 is not retried by the client, so an exhausted script fails the test at once and says why.
        return reply or Reply(418, {"error": {"message": "scripted server: no reply left in the script"}})

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = Request(handler.command, handler.path.split("?")[0],
                          {k.lower(): v for k, v in handler.headers.items()}, body, raw, time.monotonic())
        with self._lock:
            self._requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            reply = self._next_reply(request)
            interrupted = bool(reply.delay) and self._stopping.wait(reply.delay)
        finally:
            # Counted out before the answer is written: once the client has it, it may send the next request.
            with self._lock:
                self._in_flight -= 1
        if interrupted:  # the server is stopping; the client gave up long ago
            handler.close_connection = True
            return
        request.answered = time.monotonic()
        if reply.close:
            handler.close_connection = True
            return
        if reply.raw is not None:
            payload = reply.raw.encode() if isinstance(reply.raw, str) else reply.raw
        else:
            payload = json.dumps(reply.json).encode() if reply.json is not None else b""
        try:
            handler.send_response(reply.status)
            names = {k.lower() for k in reply.headers}
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if "content-type" not in names:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before the answer
            handler.close_connection = True
