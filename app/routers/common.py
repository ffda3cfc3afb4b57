"""What every HTTP surface does around a core call: the call's deadline and disconnect
watch, the model label for the request metrics, and the Server-Timing header."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from fastapi import Request

from app.batching.base import StageTimes
from app.core import Answer, CallContext, InferenceCore
from app.errors import InvalidInput
from app.registry.registry import Registry
from app.responses import JSONResponse
from app.schemas.common import ErrorResponse, TaskRequest, header_int
from app.schemas.embed import TRUNCATED_HEADER

TASK_ROUTE_OPTIONS: dict[str, Any] = {
    "responses": {
        code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 500, 503, 504)
    },
    "response_class": JSONResponse,
}
TIMEOUT_HEADER = "x-request-timeout-ms"
T = TypeVar("T")


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def core_of(request: Request) -> InferenceCore:
    core: InferenceCore = request.app.state.core
    return core


def asked_timeout_ms(request: Request) -> int | None:
    """X-Request-Timeout-Ms, which may only shorten the server's request timeout."""
    asked = request.headers.get(TIMEOUT_HEADER)
    if asked is None:
        return None
    milliseconds = header_int(asked)
    if milliseconds is None or milliseconds < 1:
        raise InvalidInput(
            "X-Request-Timeout-Ms must be a positive whole number of milliseconds "
            f"(ASCII digits, at most 9), not {asked[:32]!r}"
        )
    return milliseconds


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (the body has been read, so only that can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def serving(
    request: Request,
    serve: Callable[[InferenceCore, CallContext], Awaitable[T]],
    core: InferenceCore | None = None,
) -> T:
    """Run one core call for this HTTP request: its deadline, cancelled when the client
    leaves, and the serving model named for the request metrics whatever the outcome."""
    core = core or core_of(request)
    asked = asked_timeout_ms(request)
    call = CallContext(core.deadline(asked), partial(_client_gone, request), timeout_ms=asked)
    try:
        return await serve(core, call)
    finally:
        if call.model is not None:
            request.state.served_model = call.model  # the request metrics' model label


def timing_headers(core: InferenceCore, times: StageTimes) -> dict[str, str]:
    """Server-Timing (tokenize, queue, forward, postprocess), unless turned off."""
    if not core.settings.server_timing:
        return {}
    return {"Server-Timing": times.server_timing()}


def truncation_headers(truncated: list[int]) -> dict[str, str]:
    """X-Truncated-Inputs: the indices of the inputs cut to the model's max_length (comma
    separated, ascending); no header when none was cut."""
    if not truncated:
        return {}
    return {TRUNCATED_HEADER: ",".join(map(str, truncated))}


def answer_headers(core: InferenceCore, answer: Answer[Any]) -> dict[str, str]:
    """The headers every answer of a core call carries: Server-Timing, X-Truncated-Inputs."""
    return {**timing_headers(core, answer.times), **truncation_headers(answer.truncated)}


async def serve_task(request: Request, body: TaskRequest) -> JSONResponse:
    """The whole native route of every task: the request's own core method, answered as
    {"model", "results"}."""
    core = core_of(request)
    answer = await serving(request, body.serve, core)
    return JSONResponse(
        {"model": answer.model, "results": answer.results},
        headers=answer_headers(core, answer),
    )
