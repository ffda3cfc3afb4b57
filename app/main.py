"""The app factory: create_app(settings) builds the FastAPI app; its lifespan loads the models."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.batching.batcher import Batcher, WorkerPools
from app.errors import ServeError, error_body, status_and_type
from app.middleware import BodySizeLimitMiddleware, RequestMetricsMiddleware
from app.protocols.errors import ProtocolErrorMiddleware
from app.registry.catalog import load_catalog
from app.registry.registry import Registry
from app.responses import JSONResponse
from app.routers import (
    classify,
    embed,
    health,
    hf,
    models,
    ner,
    openai,
    qa,
    sentiment,
    summarize,
    translate,
    v2,
)
from app.routers.docs import install_docs
from app.settings import Settings

logger = logging.getLogger(__name__)

TASK_ROUTERS = (classify, sentiment, qa, translate, summarize, ner, embed)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        body_itself = not loc and str(err.get("type", "")).endswith("_type")
        if err.get("type") == "json_invalid" or body_itself:
            return (
                'request body must be a JSON object like {"inputs": "..."}, sent with '
                "Content-Type: application/json"
            )
        problems.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) + " (see /docs for the request schema)"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        status, kind = status_and_type(exc)
        return JSONResponse(error_body(kind, exc.message), status_code=status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_input", _validation_message(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            kind = "not_found"
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            kind = "method_not_allowed"
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        else:
            kind, message = "http_error", str(exc.detail)
        return JSONResponse(error_body(kind, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return JSONResponse(
            error_body("internal_error", f"unexpected {type(exc).__name__}; see the server log"),
            500,
        )


def _configure_threads(settings: Settings) -> None:
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)


def freeze_startup_objects() -> None:
    """Keep the garbage collector off what start-up made (models, tokenizers, modules).

    A served model leaves ~400k tracked objects behind; a full collection walks them all,
    measured at ~250 ms here, with the GIL held, stalling every request in flight. Frozen
    objects are never scanned, so full collections only see what requests leave behind.
    """
    gc.collect()
    gc.freeze()
    logger.info("froze %d start-up objects out of garbage collection", gc.get_freeze_count())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    catalog = load_catalog(settings.models)  # a wrong catalog stops start-up here
    pools = WorkerPools.create(settings.tokenize_threads, settings.postprocess_threads)
    timeout_s = settings.request_timeout_ms / 1000.0
    registry = Registry(
        catalog, settings, lambda model, thread: Batcher(model, pools, timeout_s, thread)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _configure_threads(settings)
        await registry.load_all()
        logger.info("all %d models ready", len(catalog.models))
        if settings.gc_freeze:
            freeze_startup_objects()
        try:
            yield
        finally:
            await registry.close()
            pools.shutdown()
            gc.unfreeze()

    app = FastAPI(
        title="nlp-serve",
        version=__version__,
        description="NLP model serving: classify, sentiment, qa, translate, summarize, ner, embed.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # served offline by install_docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.registry = registry
    routers = [module.router for module in (*TASK_ROUTERS, health, models)]
    routers += [openai.router, hf.router, v2.router, v2.models_router]
    for router in routers:
        app.include_router(router)
    install_docs(app)
    install_error_handlers(app)
    routes = frozenset(getattr(r, "path", "") for router in routers for r in router.routes)
    app.add_middleware(
        RequestMetricsMiddleware, routes=routes, server_timing=settings.server_timing
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ProtocolErrorMiddleware)  # outermost: re-wraps every error body
    return app
