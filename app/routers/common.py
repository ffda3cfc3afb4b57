"""What every task route does: resolve the model, check limits, submit, answer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from fastapi import Depends, Request

from app.auth import require_api_key
from app.errors import PayloadTooLarge
from app.registry.model import ServedModel
from app.registry.registry import Registry
from app.registry.spec import TaskName
from app.responses import JSONResponse
from app.schemas.common import ErrorResponse

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


async def run(request: Request, model: ServedModel, items: Sequence[Any], params: Any) -> list[Any]:
    request.state.served_model = model.name
    return await registry_of(request).scheduler(model.name).submit(items, params)


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
