"""The app factory: create_app(settings) builds the FastAPI app; its lifespan loads the models."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.trace import Tracer, TracerProvider
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app import __version__
from app.auth import ApiKeyMiddleware
from app.batching.base import Scheduler, WorkLimits
from app.batching.batcher import Batcher, WorkerPools
from app.batching.continuous import ContinuousBatcher
from app.core import InferenceCore
from app.errors import (
    READ_TIMED_OUT,
    ClientClosedRequest,
    InvalidJSON,
    RequestTimeout,
    ServeError,
    status_and_type,
)
from app.lifecycle import install_drain_on_sigterm
from app.logs import REQUEST_ID, route_library_logs
from app.middleware import BodySizeLimitMiddleware, RequestIdMiddleware, RequestMetricsMiddleware
from app.pipeline import GenerativeModel, ServedModel
from app.registry.catalog import load_catalog
from app.registry.registry import Registry
from app.responses import JSONResponse, error_response, serve_error_response
from app.routers import (
    admin,
    generate,
    health,
    hf,
    models,
    openai,
    rerank,
    tasks,
    tei,
    tokenize,
    v2,
)
from app.routers.docs import install_docs
from app.runtimes import keep_torch_out
from app.schemas.validation import INVALID_JSON_MESSAGE, request_error
from app.settings import Settings
from app.tracing import INSTRUMENTATION, build_tracer_provider

if TYPE_CHECKING:
    from app.grpc_server import GrpcSurface

logger = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Every error a route raises, answered from the one table in its surface's shape."""

    def answer(request: Request, error: ServeError) -> Response:
        request_id = REQUEST_ID.get() if status_and_type(error)[0] >= 500 else None
        return serve_error_response(request.url.path, error, request_id)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> Response:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, request_error(exc.errors()))

    def gone(request: Request) -> ServeError:
        """The body's read ended in a disconnect: a 408 already answered (counted as that),
        or a client that left."""
        if request.scope.get(READ_TIMED_OUT):
            return RequestTimeout("the request body did not arrive in time")
        return ClientClosedRequest("the client closed the connection before its body arrived")

    @app.exception_handler(ClientDisconnect)
    async def client_disconnected(request: Request, _: ClientDisconnect) -> Response:
        return answer(request, gone(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and isinstance(exc.__context__, ClientDisconnect):
            return answer(request, gone(request))  # FastAPI's body parsing met the disconnect
        if exc.status_code == 400:  # FastAPI could not parse the body (bad UTF-8, too deep)
            return answer(request, InvalidJSON(INVALID_JSON_MESSAGE))
        path = request.url.path
        if exc.status_code == 404:
            kind = "not_found"
            message = f"no route {request.method} {path}; see /docs for the API"
        elif exc.status_code == 405:
            kind = "method_not_allowed"
            message = f"{request.method} is not allowed on {path}; see /docs"
        else:
            kind, message = "http_error", str(exc.detail)
        return error_response(path, exc.status_code, kind, message, headers=exc.headers)


def freeze_startup_objects() -> None:
    """Keep the garbage collector off what start-up made (models, tokenizers, modules).

    A served model leaves ~400k tracked objects behind; a full collection walks them all,
    measured at ~250 ms here, with the GIL held, stalling every request in flight. Frozen
    objects are never scanned, so full collections only see what requests leave behind.
    """
    gc.collect()
    gc.freeze()
    logger.info("froze %d start-up objects out of garbage collection", gc.get_freeze_count())


async def start_grpc(
    core: InferenceCore, settings: Settings, tracer: Tracer | None
) -> GrpcSurface | None:
    """The gRPC surface, when NLP_SERVE_GRPC_PORT asks for one (imported only then)."""
    if settings.grpc_port is None:
        return None
    from app.grpc_server import GrpcSurface

    surface = GrpcSurface(core, settings, tracer)
    await surface.start()
    return surface


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

    def batcher_for(model: ServedModel, thread: ThreadPoolExecutor) -> Scheduler:
        if isinstance(model, GenerativeModel):
            return ContinuousBatcher(
                model,
                thread,
                settings.generate_timeout_ms / 1000.0,
                pools.tokenize,
                inline_tokenize_max_chars=settings.inline_tokenize_max_chars,
                max_prompt_tokens=settings.max_prompt_tokens,
            )
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

    core = InferenceCore(registry, settings, pools.tokenize)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await registry.load_all()
        logger.info("all %d models ready", len(catalog.models))
        grpc = await start_grpc(core, settings, tracer)
        install_drain_on_sigterm(registry, settings.drain_seconds)
        if settings.gc_freeze:
            freeze_startup_objects()
        try:
            yield
        finally:
            if grpc is not None:  # calls in flight finish first, as HTTP's do
                await grpc.stop(settings.shutdown_grace_seconds)
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
    app.state.core = core
    routers = [module.router for module in (tasks, health, models)]
    routers += [openai.router, hf.router, v2.router, v2.models_router]
    routers += [tokenize.router, tei.router]
    routers.append(rerank.router)  # /v1/rerank, /v2/rerank (Jina, Cohere)
    routers.append(generate.router)  # /v1/generate (causal LMs, streamed or not)
    if settings.admin_api_keys:  # the admin API exists only with its own keys
        routers.append(admin.router)
    for router in routers:
        app.include_router(router)
    install_docs(app)
    install_error_handlers(app)
    routes = frozenset(getattr(r, "path", "") for router in routers for r in router.routes)
    # Added innermost first: the request id wraps the metrics, which wrap the key check,
    # which comes before the body limit reads anything.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, settings=settings)
    app.add_middleware(RequestMetricsMiddleware, routes=routes, access_log=settings.access_log)
    app.add_middleware(RequestIdMiddleware)
    return app
