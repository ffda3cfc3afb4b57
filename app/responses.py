"""JSON responses rendered by orjson (dataclass results and numpy scalars serialise natively),
and error answers in the shape of the surface a path belongs to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.types import Scope, Send

from app.errors import DEFAULT_RETRY_AFTER_S, ERROR_TABLE, ServeError, status_and_type
from app.protocols.errors import error_answer


class JSONResponse(StarletteJSONResponse):
    """A JSON response (FastAPI documents its route's response model) rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(
    path: str,
    status: int,
    kind: str,
    message: str,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An error answer from a route's exception handler, in its surface's shape."""
    body, shaped = error_answer(path, status, kind, message, request_id)
    response = Response(body, status, headers=dict(headers or {}))
    for name, value in shaped:
        response.headers[name.decode()] = value.decode()
    return response


def serve_error_response(path: str, error: ServeError, request_id: str | None) -> Response:
    """A ServeError's answer: the table's status and type; every 503 says when to come back."""
    status, kind = status_and_type(error)
    headers = error.headers
    if status == 503 and "Retry-After" not in headers:
        headers = {**headers, "Retry-After": str(DEFAULT_RETRY_AFTER_S)}
    return error_response(path, status, kind, error.message, request_id, headers)


async def send_error(
    scope: Scope,
    send: Send,
    error: type[ServeError],
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    request_id: str | None = None,
) -> None:
    """Answer from ASGI middleware, before or without any route: the error table's status and
    type, in the shape of the surface the request's path belongs to."""
    status, kind = ERROR_TABLE[error]
    await send_error_of(scope, send, status, kind, message, headers, request_id)


async def send_error_of(
    scope: Scope,
    send: Send,
    status: int,
    kind: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    request_id: str | None = None,
) -> None:
    payload, shaped = error_answer(scope.get("path", ""), status, kind, message, request_id)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*shaped, (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})
