"""Running the app on uvicorn: limits on connections, keep-alive and header time, from settings."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.logs import logging_config
from app.settings import Settings

logger = logging.getLogger(__name__)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """httptools with a deadline for each request's headers.

    uvicorn closes idle keep-alive connections but gives a request's headers unlimited time:
    a client sending one byte now and then holds a connection (and a slot of the concurrency
    limit) forever. Here a connection must deliver complete headers within
    NLP_SERVE_HEADER_TIMEOUT_SECONDS of opening or of starting a request, or it is closed.
    """

    _timeout_s: float | None = None  # read once per process (workers are separate processes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    @classmethod
    def timeout_s(cls) -> float:
        if cls._timeout_s is None:
            cls._timeout_s = Settings().header_timeout_seconds
        return cls._timeout_s

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.timeout_s(), self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        logger.info(
            "closing a connection that sent no complete headers in %.1f s", self.timeout_s()
        )
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run() keywords for `nlp-serve serve`."""
    timeout_s = settings.request_timeout_ms / 1000.0
    return {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "http": HeaderTimeoutProtocol,
        "log_config": logging_config(settings.log_level, settings.log_format),
        "log_level": settings.log_level,
        "access_log": False,  # ours has route, model, status and request id (app.access)
        "limit_concurrency": settings.max_concurrency,
        "timeout_keep_alive": settings.keep_alive_seconds,
        # After the listener closes, in-flight requests may take up to their own deadline.
        "timeout_graceful_shutdown": math.ceil(timeout_s + settings.shutdown_grace_seconds),
    }
