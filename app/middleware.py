"""Pure-ASGI middleware: request ids, request metrics and access log, the body size limit, and
the body read deadline where no GuardedHttpProtocol runs (Ray Serve).

Order, outermost first: request id (so every line and answer carries it, including a crash's
500), metrics (so every status is counted as sent, the body limit's 413 included), body limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.errors import READ_TIMED_OUT, PayloadTooLarge, RequestTimeout
from app.logs import REQUEST_ID
from app.responses import send_error, send_error_of

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("app.access")

REQUEST_ID_HEADER = b"x-request-id"
# What a client may send as its own id: short, printable, no spaces or quotes.
VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


class RequestIdMiddleware:
    """Take a well-formed X-Request-ID or make one; echo it on every response; set it for the
    logs. Also the last line of defence: an unhandled exception is logged once (with the id)
    and answered 500 in the contract's format."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = next((v for k, v in scope.get("headers", ()) if k == REQUEST_ID_HEADER), None)
        valid = offered is not None and VALID_REQUEST_ID.fullmatch(offered) is not None
        request_id = offered.decode() if valid and offered else uuid.uuid4().hex
        header = (REQUEST_ID_HEADER, request_id.encode())
        token = REQUEST_ID.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_error_of(
                    scope,
                    send_with_id,
                    500,
                    "internal_error",
                    "unexpected server error; see the server log",
                    request_id=request_id,
                )
        finally:
            REQUEST_ID.reset(token)


# Operational routes stay out of request metrics so probes and scrapes do not drown traffic.
UNMETERED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestMetricsMiddleware:
    """Request count, latency and in-flight metrics, labelled by route, model and status; and
    the access log line, when it is on."""

    def __init__(self, app: ASGIApp, routes: frozenset[str], access_log: bool = False) -> None:
        self.app = app
        self.routes = routes
        self.access_log = access_log

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
            route = self._route(scope, path)
            labels = ("http", route, model, str(status))
            seconds = time.perf_counter() - started
            metrics.REQUESTS.labels(*labels).inc()
            metrics.REQUEST_SECONDS.labels(*labels).observe(seconds)
            if self.access_log:
                access_logger.info(
                    "%s %s %d %.1f ms",
                    scope.get("method"),
                    path,
                    status,
                    seconds * 1000,
                    extra={
                        "method": scope.get("method"),
                        "route": route,
                        "model": model or None,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                    },
                )


class BodySizeLimitMiddleware:
    """Answer 413 for bodies over the limit, whether or not Content-Length announces them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, scope: Scope, send: Send) -> None:
        await send_error(
            scope,
            send,
            PayloadTooLarge,
            f"request body is over {self.max_bytes} bytes (NLP_SERVE_MAX_BODY_BYTES); "
            "send fewer or shorter inputs per request",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(scope, send)
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
                    await self._reject(scope, send)
                return
            replied = replied or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not replied:
                await self._reject(scope, send)


class _BodyTooLarge(Exception):
    pass


class BodyReadDeadline:
    """NLP_SERVE_REQUEST_READ_TIMEOUT_SECONDS where no GuardedHttpProtocol runs (a Ray Serve
    replica, app/ray_serve.py): the request's body must reach the
    app within that many seconds of the request reaching the replica, or the request is
    answered 408 in the contract's format (`connection: close`) and the app's read ends with a
    disconnect, which frees its slot: what GuardedHttpProtocol (app/server.py) does under
    `nlp-serve serve`. Ray's proxy bounds a request only by its request_timeout_s, which any
    client lifts with `x-request-timeout-seconds: 0`, and answers in plain text.

    Only the reading of the body is timed: once it is complete, or the app has answered
    (a missing key is answered from the headers), `receive` passes through untouched.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        reading = True  # the body is not complete yet
        answered = False  # the app started its response
        timed_out = False

        async def timed_receive() -> Message:
            nonlocal reading, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if not reading or answered:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except TimeoutError:
                timed_out = True
                scope[READ_TIMED_OUT] = True
                why = RequestTimeout.after(self.seconds).message
                await send_error(scope, send, RequestTimeout, why, [(b"connection", b"close")])
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                reading = False
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if timed_out:
                return  # the 408 is the answer; the app's is moot
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not timed_out:
                raise
