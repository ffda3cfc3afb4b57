"""Server-Sent Events: a stream of JSON events over one HTTP response (text/event-stream)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies (nginx) must pass each event on at once
}


def sse_event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


class EventStream(StreamingResponse):
    """A stream that calls `on_close` however it ends: finished, the client gone, or never
    started (a client that left before the first byte: the events' own cleanup never runs)."""

    def __init__(
        self, events: AsyncIterator[bytes], headers: dict[str, str], on_close: Callable[[], None]
    ) -> None:
        super().__init__(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def sse_response(
    events: AsyncIterator[bytes], headers: dict[str, str], on_close: Callable[[], None]
) -> StreamingResponse:
    return EventStream(events, headers, on_close)


def log_stream_end(status: int, kind: str, message: str) -> None:
    """A stream that ended in an error after it started, whose status no access log shows
    (the response began 200): a model fault at WARNING, a deadline or shutdown at INFO."""
    level = logging.WARNING if status == 500 else logging.INFO
    logger.log(level, "stream ended by %s (%d): %s", kind, status, message)
