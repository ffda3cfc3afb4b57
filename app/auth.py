"""API-key check for the /v1 routes (disabled when no keys are configured)."""

from __future__ import annotations

import hmac

from fastapi import Request

from app.errors import Unauthorized


async def require_api_key(request: Request) -> None:
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    offered = header[7:].strip() if header.lower().startswith("bearer ") else None
    offered = offered or request.headers.get("x-api-key")
    if offered is None:
        raise Unauthorized(
            "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
    if not any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys):
        raise Unauthorized("API key not recognised; check the key you were given")
