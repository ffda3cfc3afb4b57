"""What every task route does: resolve the model, check limits, submit, answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from fastapi import Depends, Request

from app.auth import require_api_key
from app.batching.base import StageTimes
from app.errors import ClientClosedRequest, InvalidInput, PayloadTooLarge
from app.registry.model import ServedModel
from app.registry.registry import Registry
from app.responses import JSONResponse
from app.schemas.common import ErrorResponse
from app.spec import TaskName

T = TypeVar("T")

TASK_ROUTE_OPTIONS: dict[str, Any] = {
    "dependencies": [Depends(require_api_key)],
    "responses": {
        code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 500, 503, 504)
    },
    "response_class": JSONResponse,
}


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def as_list(inputs: T | list[T]) -> list[T]:
    return inputs if isinstance(inputs, list) else [inputs]


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


TIMEOUT_HEADER = "x-request-timeout-ms"


def deadline_of(request: Request) -> float:
    """Arrival + the request timeout; X-Request-Timeout-Ms may only shorten it."""
    timeout_ms: int = request.app.state.settings.request_timeout_ms
    asked = request.headers.get(TIMEOUT_HEADER)
    if asked is not None:
        if not asked.isdigit() or int(asked) < 1:
            raise InvalidInput(
                "X-Request-Timeout-Ms must be a positive whole number of milliseconds, "
                f"not {asked!r}"
            )
        timeout_ms = min(timeout_ms, int(asked))
    return time.monotonic() + timeout_ms / 1000.0


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so only that can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run(request: Request, model: ServedModel, items: Sequence[Any], params: Any) -> list[Any]:
    """Submit to the model's scheduler; a client that leaves cancels its queued items."""
    request.state.served_model = model.name
    deadline = deadline_of(request)
    scheduler = registry_of(request).scheduler(model.name)
    times = StageTimes()
    work = asyncio.ensure_future(scheduler.submit(items, params, deadline, times))
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise ClientClosedRequest("the client disconnected before the answer was ready")
    results = work.result()
    request.state.stage_times = times  # the metrics middleware sends it as Server-Timing
    return results


def answer(model: ServedModel, results: list[Any]) -> JSONResponse:
    return JSONResponse({"model": model.name, "results": results})


async def serve_texts(
    request: Request, task: TaskName, inputs: str | list[str], name: str | None, params: Any
) -> JSONResponse:
    """The whole route for text-in tasks: limits, the model for the task, submit, answer."""
    texts = as_list(inputs)
    check_limits(request, len(texts), texts)
    model = registry_of(request).for_task(task, name)
    model.task.check(params)
    return answer(model, await run(request, model, texts, params))
