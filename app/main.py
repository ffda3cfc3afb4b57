"""The app factory: create_app(settings) builds the FastAPI app; its lifespan loads the models."""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.trace import TracerProvider
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app import __version__
from app.auth import ApiKeyMiddleware
from app.batching.base import WorkLimits
from app.batching.batcher import Batcher, WorkerPools
from app.errors import (
    DEFAULT_RETRY_AFTER_S,
    READ_TIMED_OUT,
    ClientClosedRequest,
    InvalidInput,
    InvalidJSON,
    PayloadTooLarge,
    RequestTimeout,
    ServeError,
    error_body,
    status_and_type,
)
from app.lifecycle import install_drain_on_sigterm
from app.logs import REQUEST_ID, route_library_logs
from app.middleware import BodySizeLimitMiddleware, RequestIdMiddleware, RequestMetricsMiddleware
from app.pipeline import ServedModel
from app.protocols.errors import ProtocolErrorMiddleware
from app.registry.catalog import load_catalog
from app.registry.registry import Registry
from app.responses import JSONResponse
from app.routers import admin, health, hf, models, openai, tasks, v2
from app.routers.docs import install_docs
from app.runtimes import keep_torch_out
from app.schemas.common import TOO_MANY_ITEMS
from app.settings import Settings
from app.tracing import INSTRUMENTATION, build_tracer_provider

logger = logging.getLogger(__name__)


# Union branches and validators show up in pydantic's error locations
# ("function-after[check_text(), str]", "QAInput"): a client only needs the field path.
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})
_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
MAX_PROBLEMS_SHOWN = 3


def _field_path(loc: Sequence[int | str]) -> str:
    """('body', 'inputs', 'function-after[...]', 1) -> 'inputs[1]'."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _FIELD.fullmatch(part) and part not in _TYPE_NAMES:
            path += f".{part}" if path else part
    return path or "body"


def _body_is_not_an_object(errors: Sequence[Any]) -> bool:
    return any(
        _field_path(err.get("loc", ())) == "body" and str(err.get("type", "")).endswith("_type")
        for err in errors
    )


def _validation_problems(errors: Sequence[Any]) -> str:
    """Readable `field: problem` lines, the first few only.

    A union (a text or a list of texts) reports a type mismatch for each branch it did not
    take; those are noise when another branch got further, so they are dropped then.
    """
    mismatches = [e for e in errors if str(e.get("type", "")).endswith("_type")]
    relevant = [e for e in errors if e not in mismatches] or mismatches
    by_field: dict[str, list[str]] = {}
    for err in relevant:
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        messages = by_field.setdefault(_field_path(err.get("loc", ())), [])
        if message not in messages:
            messages.append(message)
    problems = [f"{field}: {' or '.join(msgs)}" for field, msgs in by_field.items()]
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


def install_error_handlers(app: FastAPI) -> None:
    def answer(error: ServeError) -> JSONResponse:
        status, kind = status_and_type(error)
        request_id = REQUEST_ID.get() if status >= 500 else None
        body = error_body(kind, error.message, request_id)
        headers = error.headers
        if status == 503 and "Retry-After" not in headers:
            headers = {**headers, "Retry-After": str(DEFAULT_RETRY_AFTER_S)}
        return JSONResponse(body, status, headers=headers)

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return answer(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        kinds = {str(err.get("type", "")) for err in errors}
        if "json_invalid" in kinds:
            return answer(InvalidJSON(INVALID_JSON_MESSAGE))
        if _body_is_not_an_object(errors):
            return answer(InvalidInput(BODY_SHAPE_MESSAGE))
        if TOO_MANY_ITEMS in kinds:
            too_many = [e for e in errors if e.get("type") == TOO_MANY_ITEMS]
            return answer(PayloadTooLarge(_validation_problems(too_many) + "; split the request"))
        return answer(InvalidInput(_validation_problems(errors) + " (see /docs for the schema)"))

    def gone(request: Request) -> ServeError:
        """The body's read ended in a disconnect: a 408 already answered (counted as that),
        or a client that left."""
        if request.scope.get(READ_TIMED_OUT):
            return RequestTimeout("the request body did not arrive in time")
        return ClientClosedRequest("the client closed the connection before its body arrived")

    @app.exception_handler(ClientDisconnect)
    async def client_disconnected(request: Request, _: ClientDisconnect) -> JSONResponse:
        return answer(gone(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__context__, ClientDisconnect):
            return answer(gone(request))  # FastAPI's body parsing met the disconnect
        if exc.status_code == 400:  # FastAPI could not parse the body (bad UTF-8, too deep)
            return answer(InvalidJSON(INVALID_JSON_MESSAGE))
        if exc.status_code == 404:
            kind = "not_found"
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            kind = "method_not_allowed"
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        else:
            kind, message = "http_error", str(exc.detail)
        return JSONResponse(error_body(kind, message), exc.status_code, headers=exc.headers)


INVALID_JSON_MESSAGE = (
    "request body is not valid JSON: send UTF-8 encoded JSON (at most a few hundred levels "
    'deep) like {"inputs": "..."} with Content-Type: application/json'
)
BODY_SHAPE_MESSAGE = (
    'request body must be a JSON object like {"inputs": "..."}, sent with '
    "Content-Type: application/json"
)


def freeze_startup_objects() -> None:
    """Keep the garbage collector off what start-up made (models, tokenizers, modules).

    A served model leaves ~400k tracked objects behind; a full collection walks them all,
    measured at ~250 ms here, with the GIL held, stalling every request in flight. Frozen
    objects are never scanned, so full collections only see what requests leave behind.
    """
    gc.collect()
    gc.freeze()
    logger.info("froze %d start-up objects out of garbage collection", gc.get_freeze_count())


def create_app(
    settings: Settings | None = None, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """The app. tracer_provider overrides the one tracing settings would build (tests)."""
    settings = settings or Settings()
    keep_torch_out()
    route_library_logs()
    catalog = load_catalog(settings.models)  # a wrong catalog stops start-up here
    owns_provider = tracer_provider is None
    tracer_provider = tracer_provider or build_tracer_provider(settings)
    tracer = tracer_provider.get_tracer(INSTRUMENTATION) if tracer_provider else None
    pools = WorkerPools.create(settings.tokenize_threads)
    timeout_s = settings.request_timeout_ms / 1000.0
    limits = WorkLimits(
        max_rows_per_item=settings.max_rows_per_item,
        max_tokens_per_request=settings.max_tokens_per_request,
        inline_tokenize_max_chars=settings.inline_tokenize_max_chars,
    )

    def batcher_for(model: ServedModel, thread: ThreadPoolExecutor) -> Batcher:
        return Batcher(
            model,
            pools,
            timeout_s,
            thread,
            limits=limits,
            postprocess_threads=settings.postprocess_threads,
            tracer=tracer,
        )

    registry = Registry(catalog, settings, batcher_for)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.load_all()
        logger.info("all %d models ready", len(catalog.models))
        install_drain_on_sigterm(registry, settings.drain_seconds)
        if settings.gc_freeze:
            freeze_startup_objects()
        try:
            yield
        finally:
            await registry.close()
            pools.shutdown()
            gc.unfreeze()
            if owns_provider and isinstance(tracer_provider, SDKTracerProvider):
                tracer_provider.shutdown()  # flush spans still batched for export

    app = FastAPI(
        title="nlp-serve",
        version=__version__,
        description="NLP model serving: classify, sentiment, qa, translate, summarize, ner, embed.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # FastAPI's own OpenTelemetry request span (off without a provider); our stage spans
        # hang under it. Its metrics and logs stay off: Prometheus and our logs have them.
        telemetry={
            "tracer_provider": tracer_provider,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
        },
        docs_url=None,  # served offline by install_docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    routers = [module.router for module in (tasks, health, models)]
    routers += [openai.router, hf.router, v2.router, v2.models_router]
    if settings.admin_api_keys:  # the admin API exists only with its own keys
        routers.append(admin.router)
    for router in routers:
        app.include_router(router)
    install_docs(app)
    install_error_handlers(app)
    routes = frozenset(getattr(r, "path", "") for router in routers for r in router.routes)
    # Added innermost first: protocol error shapes wrap the request id, which wraps the
    # metrics, which wrap the key check, which comes before the body limit reads anything.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, settings=settings)
    app.add_middleware(RequestMetricsMiddleware, routes=routes, access_log=settings.access_log)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ProtocolErrorMiddleware)  # outermost: re-wraps every error body
    return app
