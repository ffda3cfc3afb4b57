"""POST /v1/generate: a causal LM's completions, answered whole or streamed as Server-Sent
Events (one event per token as it is made, one per finished prompt, then the usage)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.core import StartedGeneration
from app.errors import ServeError, status_and_type
from app.protocols.sse import log_stream_end, sse_event, sse_response
from app.responses import JSONResponse
from app.routers.common import TASK_ROUTE_OPTIONS, answer_headers, core_of, serving
from app.schemas.generate import GenerateRequest, GenerateResponse, usage_of
from app.tasks.causal import Completion, TokenEvent

router = APIRouter(tags=["generate"])

STREAM_DOC = {
    "description": (
        "With stream: true, text/event-stream: `data: {json}` events, each with a `type`: "
        "token ({index, id, text[, logprob, top_logprobs]}: `text` is what this token "
        "releases; joined they make the completion), finish ({index, finish_reason, "
        "prompt_tokens, completion_tokens}), then usage ({model, usage}) last; an error "
        "after the stream has started comes as ({type: error, error: {type, message}}) last."
    ),
    "content": {"text/event-stream": {}},
}


@router.post(
    "/v1/generate",
    response_model=GenerateResponse,
    summary="Generate text with a causal LM: whole, or streamed as Server-Sent Events",
    **{**TASK_ROUTE_OPTIONS, "responses": {**TASK_ROUTE_OPTIONS["responses"], 200: STREAM_DOC}},
)
async def generate(request: Request, body: GenerateRequest) -> Response:
    core = core_of(request)
    if not body.stream:
        answer = await serving(request, body.serve, core)
        return JSONResponse(
            {
                "model": answer.model,
                "results": answer.results,
                "usage": usage_of(answer.results).model_dump(),
            },
            headers=answer_headers(core, answer),
        )
    prompts, params = body.prompts(), body.task_params()
    # Limits, the model, tokenizing and queueing happen here: their 4xx is a plain answer.
    started = await serving(
        request,
        lambda core, call: core.generation(prompts, params, model=body.model, call=call),
        core,
    )
    return sse_response(native_events(started), {"X-Model": started.model}, started.cancel)


def token_event(index: int, event: TokenEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "token", "index": index, "id": event.token, "text": event.text}
    if event.logprob is not None:
        data["logprob"] = event.logprob.logprob
        data["top_logprobs"] = event.logprob.top
    return data


async def native_events(started: StartedGeneration) -> AsyncIterator[bytes]:
    completions: list[Completion] = []
    try:
        async for index, event in started.events():
            if isinstance(event, TokenEvent):
                yield sse_event(token_event(index, event))
                continue
            completions.append(event)
            yield sse_event(
                {
                    "type": "finish",
                    "index": index,
                    "finish_reason": event.finish_reason,
                    "prompt_tokens": event.prompt_tokens,
                    "completion_tokens": event.completion_tokens,
                }
            )
    except ServeError as error:
        yield sse_event(error_event(error))
        return
    usage = usage_of(completions).model_dump()
    yield sse_event({"type": "usage", "model": started.model, "usage": usage})


def error_event(error: ServeError) -> dict[str, Any]:
    """An error after the stream started (deadline, model fault, shutdown): the last event."""
    status, kind = status_and_type(error)
    log_stream_end(status, kind, error.message)
    return {"type": "error", "error": {"type": kind, "message": error.message}}
