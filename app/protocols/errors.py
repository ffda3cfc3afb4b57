"""Each protocol surface answers errors in its own clients' shape.

The one error table (app/errors.py) still decides status and type; the handlers in app/main.py
and the body-limit middleware still write our native body ``{"error": {"type", "message"}}``.
This middleware only re-wraps that body, by path, into the shape a surface's clients parse:
OpenAI's ``{"error": {"message", "type", "param", "code"}}``, and ``{"error": "..."}`` for the
Hugging Face Inference API and the Open Inference Protocol v2. So auth, body limits, deadlines,
validation and unknown routes fail the same way on every surface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.protocols.openai_embeddings import openai_error_body

OPENAI_PREFIX = "/v1/embeddings"
HF_PREFIX = "/hf/"
V2_PREFIX = "/v2"
# Native error types that come out the same for any retry: the OpenAI client retries every
# 5xx unless told not to, which would send a poison input three times.
NOT_RETRYABLE = frozenset({"inference_failed"})

Shaper = Callable[[int, str, str], dict[str, Any]]


def _plain(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": message}


def shaper_for(path: str) -> Shaper | None:
    if path == OPENAI_PREFIX:
        return openai_error_body
    if path.startswith(HF_PREFIX) or path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        return _plain
    return None


def reshape(shaper: Shaper, status: int, body: bytes) -> tuple[bytes, str | None] | None:
    """The body in the surface's shape and our error type, or None when it is not our error."""
    try:
        native = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = native.get("error") if isinstance(native, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    code = str(error.get("type", "error"))
    return orjson.dumps(shaper(status, code, error["message"])), code


class ProtocolErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shaper = shaper_for(scope.get("path", "")) if scope["type"] == "http" else None
        if shaper is None:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshaping_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and int(message["status"]) >= 400:
                start = message  # hold it: the body decides the headers
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._send_error(send, shaper, start, b"".join(chunks))

        await self.app(scope, receive, reshaping_send)

    @staticmethod
    async def _send_error(send: Send, shaper: Shaper, start: Message, body: bytes) -> None:
        status = int(start["status"])
        reshaped = reshape(shaper, status, body)
        headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
        if reshaped is not None:
            body, code = reshaped
            if shaper is openai_error_body and code in NOT_RETRYABLE:
                headers.append((b"x-should-retry", b"false"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
