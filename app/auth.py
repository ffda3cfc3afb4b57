"""API keys, checked before anything reads the request: a request without a valid key is
answered 401 from its headers alone, its body never read or parsed.

Every route asks for a key of NLP_SERVE_API_KEYS (when any is set) except the public ones:
the liveness and readiness probes, and /metrics and the docs unless NLP_SERVE_PROTECT_METRICS
/ NLP_SERVE_PROTECT_DOCS say otherwise. A route added later is protected without doing
anything. The admin API (/admin) asks for a key of NLP_SERVE_ADMIN_API_KEYS; without them it
is not mounted at all (404). Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import Unauthorized
from app.responses import send_error
from app.settings import Settings

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
METRICS_PATHS = frozenset({"/metrics"})
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})
DOCS_PREFIX = "/docs-assets/"  # Swagger UI and ReDoc assets (app/routers/docs.py)
ADMIN_PREFIX = "/admin"


def offered_key(headers: Mapping[bytes, bytes]) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>` (HTTP headers, or gRPC metadata
    with its keys and values as bytes)."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
        if key:
            return key
    api_key = headers.get(b"x-api-key")
    return api_key.decode("latin-1") if api_key is not None else None


def key_problem(offered: str | None, keys: list[str], what: str) -> str | None:
    """Why `offered` is not accepted among `keys`, or None when it is."""
    if offered is None:
        return f"missing {what}: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    candidate = offered.encode("utf-8", "surrogateescape")
    if not any(hmac.compare_digest(candidate, key.encode()) for key in keys):
        return f"{what} not recognised; check the key you were given"
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        public = set(PROBE_PATHS)
        if not settings.protect_metrics:
            public |= METRICS_PATHS
        if not settings.protect_docs:
            public |= DOCS_PATHS
        self.public = frozenset(public)

    def _required(self, path: str) -> tuple[list[str], str] | None:
        """The keys this path asks for and what they are called; None: no key needed."""
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            keys = self.settings.admin_api_keys
            return (keys, "admin API key") if keys else None  # unmounted: the router's 404
        if path in self.public or (not self.settings.protect_docs and path.startswith(DOCS_PREFIX)):
            return None
        keys = self.settings.api_keys
        return (keys, "API key") if keys else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        required = self._required(scope["path"])
        if required is not None:
            headers = dict(scope.get("headers", []))
            problem = key_problem(offered_key(headers), *required)
            if problem is not None:
                await send_error(
                    scope, send, Unauthorized, problem, [(b"www-authenticate", b"Bearer")]
                )
                return
        await self.app(scope, receive, send)


class AnonymousExposureError(RuntimeError):
    """Binding beyond loopback with no API keys, without saying so on purpose."""


def check_exposure(settings: Settings) -> None:
    """Refuse to serve a network anonymously unless NLP_SERVE_ALLOW_ANONYMOUS says to."""
    if settings.api_keys or settings.allow_anonymous or is_loopback(settings.host):
        return
    raise AnonymousExposureError(
        f"refusing to bind {settings.host} without API keys: anyone who reaches it could use "
        "every model. Set NLP_SERVE_API_KEYS (a JSON list), bind 127.0.0.1 "
        "(NLP_SERVE_HOST), or set NLP_SERVE_ALLOW_ANONYMOUS=true to serve anonymously on purpose"
    )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
