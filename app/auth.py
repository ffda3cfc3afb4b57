"""API-key checks: the /v1 routes (disabled when no keys are configured) and the admin API
(its own keys; without them its routes are not mounted at all)."""

from __future__ import annotations

import hmac

from fastapi import Request

from app.errors import Unauthorized


async def require_api_key(request: Request) -> None:
    keys: list[str] = request.app.state.settings.api_keys
    if keys:
        _check_key(request, keys, "API key")


async def require_admin_key(request: Request) -> None:
    _check_key(request, request.app.state.settings.admin_api_keys, "admin API key")


def _check_key(request: Request, keys: list[str], what: str) -> None:
    """Accept a key of `keys` (none accepted when the list is empty)."""
    header = request.headers.get("authorization", "")
    offered = header[7:].strip() if header.lower().startswith("bearer ") else None
    offered = offered or request.headers.get("x-api-key")
    if offered is None:
        raise Unauthorized(
            f"missing {what}: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
    if not any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys):
        raise Unauthorized(f"{what} not recognised; check the key you were given")
