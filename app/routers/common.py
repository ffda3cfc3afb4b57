"""The one path every task request takes: limits, resolve the handle, submit, answer.

Protocol surfaces reuse its pieces (check_limits, deadline_of, submit, timing_headers) and
shape their own answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request

from app.batching.base import Served
from app.errors import ClientClosedRequest, InvalidInput, PayloadTooLarge
from app.registry.registry import ModelHandle, Registry
from app.responses import JSONResponse
from app.schemas.common import ErrorResponse, TaskRequest, header_int
from app.spec import TaskName

TASK_ROUTE_OPTIONS: dict[str, Any] = {
    "responses": {
        code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 500, 503, 504)
    },
    "response_class": JSONResponse,
}
TIMEOUT_HEADER = "x-request-timeout-ms"


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def check_limits(request: Request, count: int, texts: Iterable[str]) -> None:
    settings = request.app.state.settings
    if count > settings.max_items_per_request:
        raise PayloadTooLarge(
            f"{count} inputs in one request; the limit is {settings.max_items_per_request} "
            "(NLP_SERVE_MAX_ITEMS_PER_REQUEST): split the request"
        )
    for text in texts:
        if len(text) > settings.max_input_chars:
            raise PayloadTooLarge(
                f"an input has {len(text)} characters; the limit is {settings.max_input_chars} "
                "(NLP_SERVE_MAX_INPUT_CHARS): shorten or split it"
            )


def deadline_of(request: Request) -> float:
    """Arrival + the request timeout; X-Request-Timeout-Ms may only shorten it."""
    timeout_ms: int = request.app.state.settings.request_timeout_ms
    asked = request.headers.get(TIMEOUT_HEADER)
    if asked is not None:
        milliseconds = header_int(asked)
        if milliseconds is None or milliseconds < 1:
            raise InvalidInput(
                "X-Request-Timeout-Ms must be a positive whole number of milliseconds "
                f"(ASCII digits, at most 9), not {asked[:32]!r}"
            )
        timeout_ms = min(timeout_ms, milliseconds)
    return time.monotonic() + timeout_ms / 1000.0


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so only that can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def submit(
    request: Request, handle: ModelHandle, items: Sequence[Any], params: Any
) -> Served:
    """Submit to the model's scheduler; a client that leaves cancels its queued items."""
    request.state.served_model = handle.name  # the request metrics' model label
    deadline = deadline_of(request)
    work = asyncio.ensure_future(handle.submit(items, params, deadline))
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise ClientClosedRequest("the client disconnected before the answer was ready")
    return work.result()


def timing_headers(request: Request, served: Served) -> dict[str, str]:
    """Server-Timing (tokenize, queue, forward, postprocess), unless turned off."""
    if not request.app.state.settings.server_timing:
        return {}
    return {"Server-Timing": served.times.server_timing()}


async def serve_task(request: Request, task: TaskName, body: TaskRequest) -> JSONResponse:
    """The whole route of every task: limits, the model for the request, submit, answer."""
    items = body.task_items()
    check_limits(request, len(items), body.texts())
    params = body.task_params()
    handle = registry_of(request).resolve(task, body.model, params)
    served = await submit(request, handle, items, params)
    return JSONResponse(
        {"model": handle.name, "results": served.results},
        headers=timing_headers(request, served),
    )
