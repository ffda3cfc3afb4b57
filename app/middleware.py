"""Pure-ASGI middleware: request metrics and the request body size limit."""

from __future__ import annotations

import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.errors import error_body

# Operational routes stay out of request metrics so probes and scrapes do not drown traffic.
UNMETERED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestMetricsMiddleware:
    """Request count, latency and in-flight metrics, labelled by route, model and status."""

    def __init__(self, app: ASGIApp, routes: frozenset[str]) -> None:
        self.app = app
        self.routes = routes

    def _route(self, scope: Scope, path: str) -> str:
        """The route template the router matched ("/hf/models/{name}"), so labels stay
        bounded; "other" for paths no route serves."""
        template = getattr(scope.get("route"), "path", None)
        if template in self.routes:
            return str(template)
        return path if path in self.routes else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in UNMETERED_PATHS:
            await self.app(scope, receive, send)
            return
        # Per-request state (uvicorn copies it, asgi-lifespan's test manager shares one dict):
        # the model a route leaves here for the metrics must not leak to other requests.
        scope["state"] = state = dict(scope.get("state", {}))
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        metrics.INFLIGHT.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            metrics.INFLIGHT.dec()
            model = str(state.get("served_model", ""))
            labels = (self._route(scope, path), model, str(status))
            metrics.REQUESTS.labels(*labels).inc()
            metrics.REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)


class BodySizeLimitMiddleware:
    """Answer 413 for bodies over the limit, whether or not Content-Length announces them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = orjson.dumps(
            error_body(
                "payload_too_large",
                f"request body is over {self.max_bytes} bytes (NLP_SERVE_MAX_BODY_BYTES); "
                "send fewer or shorter inputs per request",
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        seen = 0
        too_large = False
        replied = False

        async def counting_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The app may catch the read error and answer 400 itself: answer 413 instead.
            nonlocal replied
            if too_large:
                if not replied:
                    replied = True
                    await self._reject(send)
                return
            replied = replied or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not replied:
                await self._reject(send)


class _BodyTooLarge(Exception):
    pass
