"""JSON responses rendered by orjson: dataclass results and numpy scalars serialise natively."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.types import Send

from app.errors import ERROR_TABLE, ServeError, error_body


class JSONResponse(StarletteJSONResponse):
    """A JSON response (FastAPI documents its route's response model) rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


async def send_error(
    send: Send,
    error: type[ServeError],
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer from ASGI middleware, before any route: the error table's status and type, the
    contract's body."""
    status, kind = ERROR_TABLE[error]
    payload = orjson.dumps(error_body(kind, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
