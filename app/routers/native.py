"""How the protocol surfaces reach the models: the generic task path, with their own bodies.

A surface either builds the body of our native route for the task (HF, v2), validated by the
native request model, or its own items and params (OpenAI); both then take the path every task
route takes (app/routers/common.py): limits, the handle the registry resolves, submit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.batching.base import Served
from app.routers.common import check_limits, registry_of, submit, timing_headers
from app.routers.tasks import TASK_ROUTES
from app.schemas.common import TaskRequest
from app.spec import TaskName

REQUEST_MODELS: dict[TaskName, type[TaskRequest]] = {
    route.task: route.request_model for route in TASK_ROUTES
}


@dataclass(frozen=True)
class Answer:
    model: str
    served: Served
    headers: dict[str, str]  # Server-Timing

    def jsonable(self) -> list[Any]:
        """The results as the native route sends them (task dataclasses become JSON objects)."""
        results: list[Any] = orjson.loads(
            orjson.dumps(self.served.results, option=orjson.OPT_SERIALIZE_NUMPY)
        )
        return results


async def serve_items(
    request: Request,
    task: TaskName,
    name: str | None,
    items: Sequence[Any],
    params: Any,
    texts: Iterable[str],
) -> Answer:
    """The generic task path for items and params a surface built itself."""
    check_limits(request, len(items), texts)
    handle = registry_of(request).resolve(task, name, params)
    served = await submit(request, handle, items, params)
    return Answer(handle.name, served, timing_headers(request, served))


def native_request(task: TaskName, body: dict[str, Any]) -> TaskRequest:
    """The native route's request model for `body`; invalid bodies answer as on that route."""
    try:
        return REQUEST_MODELS[task].model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


async def serve_body(request: Request, task: TaskName, body: dict[str, Any]) -> Answer:
    """What the native route for `task` answers to `body`."""
    parsed = native_request(task, body)
    items = parsed.task_items()
    return await serve_items(
        request, task, parsed.model, items, parsed.task_params(), parsed.texts()
    )
