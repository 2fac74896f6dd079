"""One attempt's HTTP exchange, bounded: in time by :func:`deadline` (however the server paces its bytes), in
size by :func:`post_capped`, which reads the body as a stream with a byte count, so an endless or huge answer
is cut at ``max_response_bytes`` instead of filling memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from .errors import LLMResponseTooLarge
from .redact import redact

_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
"""Headers describing the body as sent; dropped from the rebuilt response, whose body is already decoded."""


@asynccontextmanager
async def _deadline_py310(seconds: float) -> AsyncIterator[None]:
    """``asyncio.timeout`` for Python 3.10: cancels the block's task after ``seconds``, raising TimeoutError."""
    task, fired = asyncio.current_task(), []
    assert task is not None
    handle = asyncio.get_running_loop().call_later(seconds, lambda: (fired.append(True), task.cancel()))
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise asyncio.TimeoutError from None
        raise
    finally:
        handle.cancel()


deadline = getattr(asyncio, "timeout", _deadline_py310)
"""``deadline(seconds)``: the block runs in the request's own task (``wait_for`` would start another, whose
cancellation can leave half-started connection attempts behind); past it, TimeoutError."""


async def post_capped(http: httpx.AsyncClient, url: str, body: dict[str, Any], cap: int,
                      secrets: Sequence[str] = ()) -> httpx.Response:
    """POSTs ``body``; the response with its whole body read, at most ``cap`` decoded bytes of it, else
    :class:`LLMResponseTooLarge` (``secrets`` are redacted from the request id it carries)."""
    async with http.stream("POST", url, json=body) as streamed:
        request_id = redact(streamed.headers.get("x-request-id"), secrets)
        declared = streamed.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise LLMResponseTooLarge(url, cap, request_id)
        chunks, size = [], 0
        async for chunk in streamed.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise LLMResponseTooLarge(url, cap, request_id)
            chunks.append(chunk)
    headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _BODY_HEADERS]
    return httpx.Response(streamed.status_code, headers=headers, content=b"".join(chunks), request=streamed.request)
