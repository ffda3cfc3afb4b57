"""Running the app on uvicorn: what a connection may cost before the app sees a request.

`GuardedHttpProtocol` (httptools underneath) bounds, per connection:
- the headers: complete within NLP_SERVE_HEADER_TIMEOUT_SECONDS of the connection opening or
  of the request's first byte, or the connection is closed;
- the whole request, body included: complete within NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS of
  its first byte, or it is answered 408 (the contract's error body) and the connection closed,
  which ends the app's read and frees the request's slot;
- concurrency: beyond NLP_SERVE_MAX_CONCURRENCY connections or requests in progress, a request
  is answered 503 with Retry-After in the contract's format, except the liveness and readiness
  probes, which always reach the app (a full server is alive; a restarted one is not faster).
uvicorn's own limit is off: it answers plain text, probes included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import (
    DEFAULT_RETRY_AFTER_S,
    ERROR_TABLE,
    READ_TIMED_OUT,
    InvalidHTTPRequest,
    RequestTimeout,
    ServerBusy,
)
from app.logs import logging_config
from app.protocols.errors import error_answer
from app.responses import send_error
from app.settings import Settings

logger = logging.getLogger(__name__)

# Paths that bypass the concurrency limit: what a Kubernetes probe or a load balancer's health
# check asks. They answer from memory, without a model.
PROBE_PATHS = frozenset({b"/healthz", b"/readyz", b"/v2/health/live", b"/v2/health/ready"})


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    read_timeout_s: float
    max_concurrency: int | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.header_timeout_seconds,
            settings.request_read_timeout_seconds,
            settings.max_concurrency,
        )


def _raw_response(status: int, reason: str, payload: bytes, headers: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nconnection: close\r\n{headers}\r\n"
    )
    return head.encode("ascii") + payload


async def _server_busy(scope: Scope, receive: Receive, send: Send) -> None:
    message = (
        "the server has as many connections and requests in progress as it takes "
        "(NLP_SERVE_MAX_CONCURRENCY); retry after the Retry-After seconds"
    )
    retry = (b"retry-after", str(DEFAULT_RETRY_AFTER_S).encode())
    await send_error(scope, send, ServerBusy, message, [retry, (b"connection", b"close")])


class GuardedHttpProtocol(HttpToolsProtocol):
    """httptools with deadlines for a request's headers and body, and a concurrency limit
    that answers in the contract's format and lets probes through (module docstring)."""

    _limits: ConnectionLimits | None = None  # read once per process (workers are processes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._request_started = time.monotonic()
        self._arm(self.limits().header_timeout_s, self._headers_too_slow)

    @classmethod
    def limits(cls) -> ConnectionLimits:
        if cls._limits is None:
            cls._limits = ConnectionLimits.from_settings(Settings())
        return cls._limits

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = time.monotonic()
        self._arm(self.limits().header_timeout_s, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        limits = self.limits()
        remaining = limits.read_timeout_s - (time.monotonic() - self._request_started)
        self._arm(max(remaining, 0.0), self._body_too_slow)
        limit = limits.max_concurrency
        # this connection counts among the connections; its request is not yet a task
        full = limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit)
        if not full or self.url.split(b"?", 1)[0] in PROBE_PATHS:
            super().on_headers_complete()
            return
        logger.warning("server busy (NLP_SERVE_MAX_CONCURRENCY=%s): answered 503", limit)
        app, self.app = self.app, _server_busy
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, in the contract's format."""
        status, kind = ERROR_TABLE[InvalidHTTPRequest]
        message = "the request is not valid HTTP/1.1; check the client"
        body = error_answer("", status, kind, message)[0]  # no path: the native shape
        self.transport.write(_raw_response(status, "Bad Request", body))
        self.transport.close()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, delay_s: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        logger.info(
            "closing a connection that sent no complete headers in %.1f s",
            self.limits().header_timeout_s,
        )
        self.transport.close()

    def _body_too_slow(self) -> None:
        self._timer = None
        seconds = self.limits().read_timeout_s
        logger.info("answering 408 to a request whose body did not arrive in %.1f s", seconds)
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            status, kind = ERROR_TABLE[RequestTimeout]
            message = RequestTimeout.after(seconds).message
            body = error_answer(cycle.scope["path"], status, kind, message)[0]
            cycle.scope[READ_TIMED_OUT] = True  # type: ignore[literal-required]
            cycle.response_started = cycle.response_complete = True  # the app's answer is moot
            self.transport.write(_raw_response(status, "Request Timeout", body))
        self.transport.close()  # the app's read ends with a disconnect; its slot is freed


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run() keywords for `nlp-serve serve`."""
    timeout_s = settings.request_timeout_ms / 1000.0
    return {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "http": GuardedHttpProtocol,
        "log_config": logging_config(settings.log_level, settings.log_format),
        "log_level": settings.log_level,
        "access_log": False,  # ours has route, model, status and request id (app.access)
        "limit_concurrency": None,  # GuardedHttpProtocol's own, in the contract's format
        "timeout_keep_alive": settings.keep_alive_seconds,
        # After the listener closes, in-flight requests may take up to their own deadline.
        "timeout_graceful_shutdown": math.ceil(timeout_s + settings.shutdown_grace_seconds),
    }
