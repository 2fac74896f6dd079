"""The LLM client's bounds and redaction (issue 17 items 7 and 8).

A server that drips its answer a byte at a time, or sends an endless chunked body, ends within the request
deadline with a named error and bounded memory (before: > 321 s, and 2.7 GB of RSS); a server that echoes the
Authorization header gets the key into no written file and no error message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import sqlite3
import threading
import time
from collections.abc import Callable

import pytest

from llm_server import Reply, ScriptedServer, chat_body
from neuronscope.errors import ConfigError
from neuronscope.llm import LLMClient, LLMConfig, LLMHTTPError, LLMResponseTooLarge, LLMTimeout, ResponseCache
from neuronscope.llm.redact import REDACTED, redact

MESSAGES = [{"role": "user", "content": "hi"}]


class RawServer:
    """A local HTTP/1.1 server whose every answer is written by ``behave(conn)`` after the request is read."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.behave, self.requests = behave, 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            while len(body) < length:
                body += conn.recv(65536)
            with contextlib.suppress(OSError):  # the client gave up: what these tests want
                self.behave(conn)


def drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(100000):  # one byte every 0.2 s: each read is far inside the 5 s timeout
        conn.sendall(b" ")
        time.sleep(0.2)


def endless(conn: socket.socket) -> None:
    """A chunked body that does not end as far as the client can tell (64 MiB, so that a client without a cap
    fails this test instead of filling the machine's memory)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    for _ in range(1024):
        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))


def _config(url: str, **kw) -> LLMConfig:
    return LLMConfig(base_url=url, model="m", api_key_env=None, backoff_base_s=0.01, backoff_max_s=0.02, **kw)


async def _chat(cfg: LLMConfig):
    async with LLMClient(cfg) as client:
        return await client.chat(MESSAGES)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_dripping_server_ends_at_the_deadline_and_is_retried():
    with RawServer(drip) as server:
        cfg = _config(server.url, timeout_s=5.0, deadline_s=1.0, max_retries=1)
        t0 = time.monotonic()
        with pytest.raises(LLMTimeout) as info:
            asyncio.run(asyncio.wait_for(_chat(cfg), 30))
        took = time.monotonic() - t0
        requests = server.requests
    assert 2.0 <= took < 4.5  # two attempts of 1 s (a deadline is transient: retried), not 100000 x 0.2 s
    assert requests == 2
    msg = str(info.value)
    assert "deadline_s=1" in msg
    assert "gave up after 2 attempts" in msg


def test_the_deadline_defaults_from_the_timeout():
    assert _config("http://h").request_deadline_s == 180.0
    assert _config("http://h", timeout_s=10).request_deadline_s == 15.0
    assert _config("http://h", deadline_s=2).request_deadline_s == 2
    with pytest.raises(ConfigError, match="deadline_s"):
        _config("http://h", deadline_s=0)
    with pytest.raises(ConfigError, match="max_response_bytes"):
        _config("http://h", max_response_bytes=0)


def test_an_endless_body_is_cut_at_the_size_cap_with_bounded_memory():
    before = _rss_mib()
    with RawServer(endless) as server:
        cfg = _config(server.url, timeout_s=5.0, deadline_s=20.0, max_retries=2, max_response_bytes=1 << 20)
        t0 = time.monotonic()
        with pytest.raises(LLMResponseTooLarge) as info:
            asyncio.run(asyncio.wait_for(_chat(cfg), 30))
        took = time.monotonic() - t0
        requests = server.requests
    assert took < 5.0
    assert requests == 1  # an unusable answer, not a transient one: no retry
    assert _rss_mib() - before < 200
    assert f"more than {1 << 20} bytes (max_response_bytes)" in str(info.value)


def test_a_declared_oversized_body_is_refused_before_reading():
    with ScriptedServer() as server:
        server.push(raw=b"{" + b" " * 5000 + b"}")
        with pytest.raises(LLMResponseTooLarge):
            asyncio.run(_chat(_config(server.url, timeout_s=5.0, max_response_bytes=1000)))


def test_ordinary_answers_are_read_whole():
    with ScriptedServer() as server:
        server.push_chat("x" * 50000)
        res = asyncio.run(_chat(_config(server.url, timeout_s=5.0, max_response_bytes=60000)))
    assert res.text == "x" * 50000


# ------------------------------------------------------------------------------------------------- redaction

KEY = "sk-test-0123456789abcdefSECRET"
PLAIN_KEY = "plainsecretvalue"  # no credential shape: found because it is the configured key


def test_redact_finds_keys_and_credential_shapes():
    assert redact(f"got Bearer {KEY}!") == f"got Bearer {REDACTED}!"
    assert redact(f"key={KEY}") == f"key={REDACTED}"
    assert redact('{"Authorization": "Bearer abc.def-123"}') == f'{{"Authorization": "{REDACTED}"}}'
    assert redact(f"it was {PLAIN_KEY}", [PLAIN_KEY]) == f"it was {REDACTED}"
    assert redact("hf_" + "a" * 30) == REDACTED
    # ordinary text about tokens stays as it is
    for text in ("the token return", "bearer bonds", "Authorization failed for this user", "a sk-short"):
        assert redact(text) == text


def _echo(neuron_fails: str | None = None):
    """Answers every request with its Authorization header in the response (model, id, request id); for the
    neuron ``neuron_fails`` a 400 whose message quotes the header and the bare key."""

    def respond(req) -> Reply:
        auth = req.headers.get("authorization", "")
        user = req.body["messages"][1]["content"] if len(req.body["messages"]) > 1 else ""
        if neuron_fails and f"euron {neuron_fails}" in user:
            return Reply(status=400, json={"error": {"message": f"bad header {auth} (key {auth.split()[-1]})"}})
        answer = {"description": "the word return in code", "conditions": [{"kind": "token", "tokens": ["return"]}]}
        body = chat_body(json.dumps(answer), model=auth)
        body["id"] = auth
        return Reply(json=body, headers={"x-request-id": auth})

    return respond


@pytest.mark.parametrize("key", [KEY, PLAIN_KEY])
def test_an_echoed_key_reaches_no_result_cache_or_error(tmp_path, monkeypatch, key):
    monkeypatch.setenv("NS_TEST_KEY", key)
    cache = tmp_path / "cache.sqlite"

    async def go():
        cfg = LLMConfig(base_url=server.url, model="m", api_key_env="NS_TEST_KEY", cache_path=cache, timeout_s=5)
        async with LLMClient(cfg) as client:
            ok = await client.chat([{"role": "system", "content": "s"}, {"role": "user", "content": "Neuron 1/0"}])
            with pytest.raises(LLMHTTPError) as info:
                await client.chat([{"role": "system", "content": "s"}, {"role": "user", "content": "Neuron 1/1"}])
            return ok, str(info.value)

    with ScriptedServer(default=_echo(neuron_fails="1/1")) as server:
        ok, error = asyncio.run(go())
        assert all(r.headers["authorization"] == f"Bearer {key}" for r in server.requests)  # it was sent
    assert key not in json.dumps(ok.raw)
    assert key not in (ok.request_id or "")
    assert key not in error
    assert REDACTED in error
    with ResponseCache(cache) as c:
        assert len(c) == 1
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert key.encode() not in stored
    with sqlite3.connect(cache) as db:
        assert all(key not in json.dumps(row) for row in db.execute("SELECT * FROM responses"))


def test_explain_writes_no_echoed_key(minilm_store, tmp_path, monkeypatch):
    from neuronscope.agents import explain
    from neuronscope.scoring.run import StoreSource

    monkeypatch.setenv("NS_TEST_KEY", KEY)
    out, cache = tmp_path / "out.jsonl", tmp_path / "cache.sqlite"
    with ScriptedServer(default=_echo(neuron_fails="1/1")) as server:
        llm = {"base_url": server.url, "model": "m", "api_key_env": "NS_TEST_KEY", "cache_path": str(cache),
               "max_retries": 0, "timeout_s": 10}
        rows = explain(StoreSource(minilm_store), [(1, 0), (1, 1)], out, methods=("single-pass",),
                       backend="openai", progress=False, llm=llm)
    by = {(r["layer"], r["index"]): r for r in rows}
    assert "error" not in by[(1, 0)]
    assert "error" in by[(1, 1)]
    assert REDACTED in by[(1, 1)]["error"]
    written = [p for p in tmp_path.iterdir() if p.is_file()]
    assert out in written
    assert cache in written
    for p in written:
        assert KEY.encode() not in p.read_bytes(), p.name


def test_the_python310_deadline_fallback_raises_timeout_and_lets_other_cancels_through():
    from neuronscope.llm.transport import _deadline_py310

    async def slow(seconds: float, limit: float) -> None:
        async with _deadline_py310(limit):
            await asyncio.sleep(seconds)

    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(slow(5, 0.1))
    assert time.monotonic() - t0 < 2
    asyncio.run(slow(0.01, 5))  # inside the deadline: nothing raised

    async def cancelled() -> None:
        task = asyncio.create_task(slow(5, 5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
